"""The names of the lens's hook points (TransformerLens's names) and how to resolve them.

Full names look like ``blocks.3.attn.hook_pattern``; short forms are accepted by
:func:`act_name` and by the cache: ``("pattern", 3)`` or ``"pattern"``-with-layer.
"""

from __future__ import annotations

import difflib
from typing import Callable, Iterable

from course.lens.errors import UnknownHookError

GLOBAL_POINTS = ("hook_embed", "hook_pos_embed", "ln_final.hook_scale", "ln_final.hook_normalized")
BLOCK_POINTS = (
    "hook_resid_pre", "ln1.hook_scale", "ln1.hook_normalized",
    "attn.hook_q", "attn.hook_k", "attn.hook_v", "attn.hook_attn_scores", "attn.hook_pattern",
    "attn.hook_z", "attn.hook_result", "hook_attn_out", "hook_resid_mid",
    "ln2.hook_scale", "ln2.hook_normalized",
    "mlp.hook_pre", "mlp.hook_post", "hook_mlp_out", "hook_resid_post",
)
# Per-head results cost an extra [batch, pos, head, d_model] tensor: only on request.
ON_REQUEST = ("attn.hook_result",)

# Short names (as TransformerLens's utils.get_act_name accepts them) -> block point.
SHORT = {
    "embed": "hook_embed", "pos_embed": "hook_pos_embed",
    "resid_pre": "hook_resid_pre", "resid_mid": "hook_resid_mid", "resid_post": "hook_resid_post",
    "q": "attn.hook_q", "k": "attn.hook_k", "v": "attn.hook_v", "z": "attn.hook_z",
    "attn_scores": "attn.hook_attn_scores", "scores": "attn.hook_attn_scores",
    "pattern": "attn.hook_pattern", "result": "attn.hook_result",
    "attn_out": "hook_attn_out", "mlp_out": "hook_mlp_out",
    "pre": "mlp.hook_pre", "post": "mlp.hook_post", "mlp_pre": "mlp.hook_pre", "mlp_post": "mlp.hook_post",
    "scale": "ln_final.hook_scale",
}


def all_hook_names(n_layers: int) -> list[str]:
    names = list(GLOBAL_POINTS[:2])
    for layer in range(n_layers):
        names += [f"blocks.{layer}.{p}" for p in BLOCK_POINTS]
    return names + list(GLOBAL_POINTS[2:])


def act_name(name: str, layer: int | None = None, layer_type: str | None = None) -> str:
    """``act_name("pattern", 1)`` -> ``"blocks.1.attn.hook_pattern"``; full names pass through.

    ``layer_type`` picks a layer norm: ``act_name("scale", 0, "ln1")``.
    """
    if name.startswith(("blocks.", "hook_", "ln_final.")):
        return name
    if layer_type is not None and name in ("scale", "normalized"):
        return f"blocks.{layer}.{layer_type}.hook_{name}" if layer is not None else f"ln_final.hook_{name}"
    point = SHORT.get(name, name)
    if point in GLOBAL_POINTS or layer is None:
        return point
    return f"blocks.{layer}.{point}"


def check_hook_name(name: str, valid: Iterable[str]) -> str:
    valid = list(valid)
    if name in valid:
        return name
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
    hint = f" Did you mean {close[0]!r}?" if close else " See model.hook_names for the list."
    raise UnknownHookError(f"Unknown hook name {name!r}.{hint}")


def select(names_filter, valid: list[str]) -> list[str]:
    """Resolve a names filter (None, a name, a list of names, or a predicate) to hook names."""
    if names_filter is None:
        return [n for n in valid if not n.endswith(ON_REQUEST)]
    if callable(names_filter):
        return [n for n in valid if names_filter(n)]
    if isinstance(names_filter, str):
        names_filter = [names_filter]
    return [check_hook_name(act_name(n) if isinstance(n, str) else act_name(*n), valid) for n in names_filter]


NameFilter = None | str | Iterable[str] | Callable[[str], bool]
