"""Inside GPT-2: a course in mechanistic interpretability, done by hand on a small GPT-2.

    import course
    model = course.load_model()          # the bundled course GPT-2, offline
    logits, cache = model.run_with_cache("When Mary and John went to the store, John gave a drink to")
"""

from __future__ import annotations

__version__ = "0.1.0"


def load_model(name_or_path="course-gpt2", device=None):
    """A :class:`course.lens.HookedGPT2` over a GPT-2.

    ``name_or_path``: ``"course-gpt2"`` (bundled, the default), ``"modular-addition"``
    (bundled, chapter 6), ``"gpt2"`` (GPT-2 small from the Hugging Face hub or its
    cache), or a local directory saved with ``save_pretrained``. ``device``: CUDA when
    present, else CPU, unless you name one.
    """
    from course.lens import HookedGPT2
    from course.models.loading import load_hf_model

    hf, tokenizer = load_hf_model(name_or_path, device)
    return HookedGPT2(hf, tokenizer, name=str(name_or_path))


__all__ = ["load_model", "__version__"]
