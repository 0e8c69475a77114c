"""The course's hook layer over a Hugging Face GPT-2 (TransformerLens names and shapes)."""

from course.lens.cache import ActivationCache
from course.lens.errors import HookReturnError, LensError, PromptError, UnknownHookError
from course.lens.hook_points import act_name
from course.lens.instrument import HookPoint
from course.lens.model import HookedGPT2, LensConfig

__all__ = ["ActivationCache", "HookPoint", "HookedGPT2", "LensConfig", "act_name",
           "LensError", "PromptError", "UnknownHookError", "HookReturnError"]
