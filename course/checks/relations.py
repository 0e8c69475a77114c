"""How a wrong tensor relates to the right one, in plain words.

When no exercise-specific mistake reproduces a student's answer, the check still looks for an
exact relation between the two tensors: the opposite sign, a transpose, a constant factor (and
whether it is the size of one of the dimensions, as a sum-for-mean gives), a constant or
per-slice offset (centring), a per-slice scale (a normalisation), a shift by one position, the
same values in another arrangement, or differences confined to one index of one dimension.
Each relation found is a fact about the two tensors, so the sentence is never a guess; the
likely mistakes it names come after it, as questions to the student.

    describe_relation(got, want)  # -> "every entry is -1 × the expected: ..." or None
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

_CLOSE = dict(rtol=1e-3, atol=1e-5)


def _close(a: Tensor, b: Tensor) -> bool:
    scale = float(b.abs().max()) if b.numel() else 0.0
    return bool(torch.allclose(a, b, rtol=_CLOSE["rtol"], atol=_CLOSE["atol"] + 1e-4 * scale))


def _factor_words(c: float, shape: tuple[int, ...]) -> str:
    """What a constant factor ``c`` between an answer and the expected one usually means."""
    said = []
    for n in sorted(set(shape)):
        dims = " and ".join(str(d) for d, m in enumerate(shape) if m == n)
        noun = "dimensions" if " and " in dims else "dimension"
        if n > 1 and math.isclose(c, n, rel_tol=1e-3):
            said.append(f"{n} is the size of {noun} {dims}: a sum over it where a mean belongs?")
        if n > 1 and math.isclose(c, 1 / n, rel_tol=1e-3):
            said.append(f"1/{n} is one over the size of {noun} {dims}: a mean over it where a sum belongs?")
    for n in sorted({*shape, 8, 16, 32, 64, 128}):
        if n > 1 and math.isclose(c, math.sqrt(n), rel_tol=1e-3):
            said.append(f"{c:.4g} is √{n}: a scale such as 1/√d_head left out?")
        if n > 1 and math.isclose(c, 1 / math.sqrt(n), rel_tol=1e-3):
            said.append(f"{c:.4g} is 1/√{n}: a scale such as 1/√d_head applied where it does not belong, or twice?")
    if not said and (math.isclose(c, 2, rel_tol=1e-3) or math.isclose(c, 0.5, rel_tol=1e-3)):
        said.append("A factor of 2: a term counted twice, or a ½ (or a square) dropped?")
    if not said:
        said.append("A missing or extra scale: a normalisation, a temperature or a norm?")
    return " " + " Or ".join(said[:3])


def _rank_one(want: Tensor, d: int) -> bool:
    """Whether ``want``, as a matrix with dimension ``d`` for columns, has rank one: then any other
    rank-one answer is a per-slice multiple of it, and that says nothing about the mistake."""
    m = want.movedim(d, -1).reshape(-1, want.shape[d])
    if min(m.shape) < 2:
        return True
    sv = torch.linalg.svdvals(m)
    return bool(sv[1] <= 1e-6 * sv[0])


def _dim_words(d: int, n_dims: int) -> str:
    return "the last dimension" if d == n_dims - 1 else f"dimension {d}"


def describe_relation(got: Tensor, want: Tensor) -> str | None:
    """One sentence on an exact relation between ``got`` and ``want`` (same shape, floating
    point), or None when none of the relations holds."""
    if not (isinstance(got, Tensor) and isinstance(want, Tensor)) or got.shape != want.shape:
        return None
    if not (got.is_floating_point() and want.is_floating_point()):
        return None
    got, want = got.detach().double().cpu(), want.detach().double().cpu()
    if not (torch.isfinite(got).all() and torch.isfinite(want).all()) or float(want.abs().max()) == 0:
        return None
    if want.numel() < 2:        # one number: only its sign can be told apart from any other mistake
        if _close(got, -want):
            return ("the opposite sign of the expected: a minus sign missing (or extra), or a difference taken "
                    "the wrong way round (b − a for a − b)?")
        return None
    shape = tuple(want.shape)
    if _close(got, want):
        return None
    if _close(got, -want):
        return ("every entry has the opposite sign of the expected: a minus sign missing (or extra), or a "
                "difference taken the wrong way round (b − a for a − b)?")
    if want.dim() >= 2 and shape[-1] == shape[-2] and _close(got, want.transpose(-1, -2)):
        return ("your result is the expected one transposed (its last two dimensions swapped): a product in "
                "the wrong order (B @ A for A @ B, or Wᵀ for W), or rows and columns read the other way round?")
    c = float((got * want).sum() / want.pow(2).sum())
    if abs(c - 1) > 1e-3 and abs(c) > 1e-6 and _close(got, c * want):
        return f"every entry is {c:.4g} × the expected.{_factor_words(abs(c), shape)}"
    diff = got - want
    offset = float(diff.mean())
    if abs(offset) > 1e-6 and _close(got, want + offset):
        return (f"every entry is the expected {offset:+.4g}: a constant shift. A mean subtracted where it "
                f"does not belong (or missing where it does), or a bias added (or left out)?")
    bad = ~torch.isclose(got, want, rtol=_CLOSE["rtol"], atol=_CLOSE["atol"] + 1e-4 * float(want.abs().max()))
    if 0 < int(bad.sum()) < bad.numel():
        where = bad.nonzero()
        for d in range(want.dim()):
            if shape[d] > 1 and bool((where[:, d] == where[0, d]).all()):
                i = int(where[0, d])
                edge = " (the first)" if i == 0 else " (the last)" if i == shape[d] - 1 else ""
                return (f"every difference is at index {i}{edge} of {_dim_words(d, want.dim())}; the rest "
                        f"matches: check how that index (a position range, a layer, the first or last "
                        f"element) is handled.")
    for d in range(want.dim()):
        if shape[d] < 2:
            continue
        shift = diff.mean(d, keepdim=True)
        if _close(got, want + shift) and not _close(shift, torch.zeros_like(shift)):
            return (f"the difference is the same all along {_dim_words(d, want.dim())}: a bias vector added or "
                    f"left out, or centring over that dimension (subtracting its mean) missing or extra, or "
                    f"log-probabilities where logits belong (or the reverse)?")
        ratio = (got * want).sum(d, keepdim=True) / want.pow(2).sum(d, keepdim=True).clamp_min(1e-30)
        if _close(got, want * ratio) and not _close(ratio, torch.ones_like(ratio)) and not _rank_one(want, d):
            return (f"along {_dim_words(d, want.dim())} each slice is the expected one times its own factor: a "
                    f"normalisation over that dimension (a softmax's denominator, a unit norm, a layer-norm "
                    f"scale) missing or extra?")
    for d in range(want.dim()):
        n = shape[d]
        if n < 3:
            continue
        for step in (1, -1):
            a = got.narrow(d, max(step, 0), n - 1)
            b = want.narrow(d, max(-step, 0), n - 1)
            if _close(a, b):
                return (f"your values are the expected ones shifted by one along {_dim_words(d, want.dim())}: an "
                        f"off-by-one in an index or a range (a position, a window, a slice starting one too early "
                        f"or too late)?")
    if _close(got.flatten().sort().values, want.flatten().sort().values):
        return ("you have the right values in another arrangement: dimensions in the wrong order, a reshape "
                "where a transpose (or permute) belongs, or the wrong index order?")
    return None
