"""Model-free unit tests of ``course.fourier``: the basis, the frequency norms and the sum-wave split,
on logits built by hand so the right answer is known."""

from __future__ import annotations

import math

import torch

from course.fourier import (excluded_logits, fourier_basis, frequency_norms, project_sum_waves, restricted_logits,
                            sum_wave_share)

P = 13


def _wave_logits(k: int, p: int = P, scale: float = 3.0) -> torch.Tensor:
    """``[p, p, p]``: logit(a, b, c) = scale · cos(w(a + b − c)), the algorithm the model learns, at one frequency."""
    a = torch.arange(p, dtype=torch.float64)
    s = a[:, None, None] + a[None, :, None] - a[None, None, :]
    return (scale * torch.cos(2 * math.pi * k * s / p)).float()


def test_the_basis_is_orthonormal_and_names_each_row():
    basis, names = fourier_basis(P)
    assert basis.shape == (P, P) and len(names) == P
    torch.testing.assert_close(basis @ basis.T, torch.eye(P), atol=1e-5, rtol=0)
    assert names[:3] == ["const", "cos 1", "sin 1"] and names[-1] == f"sin {P // 2}"


def test_frequency_norms_find_the_one_frequency_an_embedding_uses():
    x = torch.arange(P, dtype=torch.float32)
    embedding = torch.stack([torch.cos(2 * math.pi * 4 * x / P), torch.sin(2 * math.pi * 4 * x / P)], dim=1)
    norms = frequency_norms(embedding)
    assert norms.shape == (P // 2,)
    assert int(norms.argmax()) + 1 == 4
    assert norms[3] > 100 * norms.clone().index_fill_(0, torch.tensor([3]), 0).max()


def test_a_single_frequency_algorithm_puts_all_its_variance_on_that_sum_wave():
    share = sum_wave_share(_wave_logits(5))
    assert int(share.argmax()) + 1 == 5
    assert abs(float(share[4]) - 1.0) < 1e-4 and float(share.sum()) < 1.0 + 1e-4


def test_restricted_and_excluded_logits_split_the_logits_exactly():
    g = torch.Generator().manual_seed(0)
    logits = _wave_logits(2) + 0.3 * torch.randn(P, P, P, generator=g)
    for freqs in ([2], [2, 5], []):
        restricted, excluded = restricted_logits(logits, freqs), excluded_logits(logits, freqs)
        mean = logits.mean((0, 1), keepdim=True)
        torch.testing.assert_close(restricted - mean + excluded, logits, atol=1e-4, rtol=0)


def test_projecting_onto_the_used_frequency_keeps_the_algorithm_and_others_remove_it():
    logits = _wave_logits(3)
    torch.testing.assert_close(project_sum_waves(logits, [3]), logits, atol=1e-4, rtol=0)
    assert project_sum_waves(logits, [1, 2, 4]).abs().max() < 1e-4
