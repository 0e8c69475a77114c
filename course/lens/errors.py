"""Errors a learner can act on: each message says what went wrong and what to do."""

from __future__ import annotations


class LensError(ValueError):
    """Base class: bad input to the lens (a name, a prompt, tokens or a hook's return value)."""


class UnknownHookError(LensError, KeyError):
    def __str__(self) -> str:   # KeyError would otherwise print the message in quotes
        return str(self.args[0])


class PromptError(LensError):
    pass


class HookReturnError(LensError):
    pass
