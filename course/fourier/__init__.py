"""The Fourier view of the modular-addition model (Nanda et al. 2023): the basis, the key
frequencies, logits restricted to (or with) the key frequencies removed, and the progress
measures over the training checkpoints that ship with the model.

    from course.fourier import fourier_basis, key_frequencies, restricted_loss
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor

from course.models.modular import P, all_pairs, answer_logits, labels, split


def fourier_basis(p: int = P) -> tuple[Tensor, list[str]]:
    """``[p, p]`` orthonormal rows: the constant, then cos(wx), sin(wx) for w = 2πk/p, k = 1..(p-1)/2."""
    x = torch.arange(p, dtype=torch.float64)
    rows, names = [torch.ones(p, dtype=torch.float64)], ["const"]
    for k in range(1, p // 2 + 1):
        rows += [torch.cos(2 * math.pi * k * x / p), torch.sin(2 * math.pi * k * x / p)]
        names += [f"cos {k}", f"sin {k}"]
    basis = torch.stack(rows)
    return (basis / basis.norm(dim=1, keepdim=True)).float(), names


def frequency_norms(matrix: Tensor) -> Tensor:
    """``matrix [p, d]`` (one row per input number) -> ``[(p-1)/2]``: the norm of its cos and sin
    components at each frequency k = 1..(p-1)/2."""
    basis, _ = fourier_basis(matrix.shape[0])
    coef = basis @ matrix                                   # [p, d]
    return (coef[1::2].pow(2).sum(-1) + coef[2::2].pow(2).sum(-1)).sqrt()


@torch.no_grad()
def all_logits(model) -> Tensor:
    """``[p, p, p]``: the answer logits for every (a, b)."""
    return answer_logits(getattr(model, "hf", model), all_pairs()).reshape(P, P, P).cpu().float()


@lru_cache(maxsize=256)
def sum_waves(k: int, p: int = P) -> Tensor:
    """``[2, p, p]``: cos(w(a + b)) and sin(w(a + b)) over the (a, b) grid, w = 2πk/p, unit norm
    (cached: do not modify the result)."""
    a = torch.arange(p, dtype=torch.float64)
    s = a[:, None] + a[None, :]
    waves = torch.stack([torch.cos(2 * math.pi * k * s / p), torch.sin(2 * math.pi * k * s / p)])
    return (waves / waves.flatten(1).norm(dim=1)[:, None, None]).float()


def sum_wave_share(logits: Tensor) -> Tensor:
    """``[(p-1)/2]``: the share of the logits' variance (over a, b, for each answer c, centred)
    that lies along cos(w(a + b)) and sin(w(a + b)) at each frequency."""
    p = logits.shape[0]
    centred = logits - logits.mean((0, 1), keepdim=True)
    total = centred.pow(2).sum()
    return torch.stack([torch.einsum("wab,abc->wc", sum_waves(k, p), centred).pow(2).sum() / total
                        for k in range(1, p // 2 + 1)])


def key_frequencies(model, share: float = 0.02) -> list[int]:
    """The frequencies k whose sum waves each carry at least ``share`` of the logits' variance."""
    s = sum_wave_share(all_logits(model))
    return [k + 1 for k in torch.nonzero(s >= share).flatten().tolist()]


def project_sum_waves(logits: Tensor, freqs: list[int]) -> Tensor:
    """``logits [p, p, p]`` -> their part along cos(w(a + b)), sin(w(a + b)) for ``freqs``, per answer."""
    p = logits.shape[0]
    out = torch.zeros_like(logits)
    for k in freqs:
        w = sum_waves(k, p)                                               # [2, p, p]
        out += torch.einsum("wab,wc->abc", w, torch.einsum("wab,abc->wc", w, logits))
    return out


def restricted_logits(logits: Tensor, freqs: list[int]) -> Tensor:
    """Only the key frequencies' sum waves, plus each answer's mean logit."""
    return logits.mean((0, 1), keepdim=True) + project_sum_waves(logits - logits.mean((0, 1), keepdim=True), freqs)


def excluded_logits(logits: Tensor, freqs: list[int]) -> Tensor:
    """Everything but the key frequencies' sum waves."""
    return logits - project_sum_waves(logits, freqs)


def loss_on(logits: Tensor, which: Tensor) -> float:
    """Cross-entropy of ``logits [p, p, p]`` on the pairs ``which`` (indices into ``all_pairs``)."""
    flat = logits.reshape(-1, logits.shape[-1])
    return float(F.cross_entropy(flat[which], labels(all_pairs())[which]))


@torch.no_grad()
def progress_measures(freqs: list[int], path=None) -> list[dict]:
    """For each shipped checkpoint: train and test loss, restricted and excluded loss (on the
    training pairs, with ``freqs``), and the sum of squared weights."""
    import course
    from course.models.modular import load_checkpoints

    train, test = split()
    model = course.load_model(str(path) if path else "modular-addition", device="cpu")
    out = []
    for step, state in load_checkpoints(path).items():
        model.hf.load_state_dict(state, strict=False)        # in place: one model, each checkpoint in turn
        logits = all_logits(model)
        out.append({"step": step, "train_loss": loss_on(logits, train), "test_loss": loss_on(logits, test),
                    "restricted_loss": loss_on(restricted_logits(logits, freqs), train),
                    "excluded_loss": loss_on(excluded_logits(logits, freqs), train),
                    "weight_norm": float(sum(v.pow(2).sum() for k, v in state.items()
                                             if "ln" not in k))})
    return out
