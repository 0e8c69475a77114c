"""Model-free unit tests of ``course.superposition``: the toy model, its data, the dimensionality and
geometry measures on hand-built weights whose answer is known, and one short training run."""

from __future__ import annotations

import pytest
import torch

from course.superposition import (ToyModel, feature_batch, feature_dimensionality, geometry, importance_weighted_loss,
                                  interference, train_toy)


def _weights(*columns) -> torch.Tensor:
    """One instance ``[1, d_hidden, feature]`` from feature columns."""
    return torch.tensor(columns, dtype=torch.float32).T[None]


def test_dimensionality_is_one_for_an_own_dimension_half_for_an_antipodal_pair_and_zero_when_dropped():
    W = _weights([1.0, 0.0], [0.0, 1.0], [0.0, -1.0], [0.0, 0.0])
    dims = feature_dimensionality(W)[0]
    torch.testing.assert_close(dims, torch.tensor([1.0, 0.5, 0.5, 0.0]))


def test_dimensionality_of_a_pentagon_is_two_fifths():
    angles = torch.arange(5) * 2 * torch.pi / 5
    W = torch.stack([angles.cos(), angles.sin()])[None]
    torch.testing.assert_close(feature_dimensionality(W)[0], torch.full((5,), 0.4), atol=1e-5, rtol=0)


def test_geometry_names_represented_superposed_and_dropped_features():
    W = _weights([1.0, 0.0], [0.0, 1.0], [0.0, -1.0], [0.05, 0.0])
    (g,) = geometry(W)
    assert g.n_represented == 3 and g.n_superposed == 2
    assert g.superposed.tolist() == [False, True, True, False]
    torch.testing.assert_close(interference(W)[0].diagonal(), W[0].pow(2).sum(0))


def test_feature_batch_keeps_probabilities_and_pairs():
    g = torch.Generator().manual_seed(0)
    p = torch.full((2, 6), 0.2)
    x = feature_batch(20000, p, n_correlated_pairs=1, n_anticorrelated_pairs=1, generator=g)
    assert x.shape == (20000, 2, 6) and x.min() >= 0 and x.max() <= 1
    present = x > 0
    assert abs(float(present[..., 4:].float().mean()) - 0.2) < 0.01
    assert torch.equal(present[..., 0], present[..., 1])
    assert not (present[..., 2] & present[..., 3]).any()
    assert abs(float(present[..., 2].float().mean()) - 0.2) < 0.01


def test_feature_batch_asks_for_a_per_feature_probability():
    with pytest.raises(ValueError, match="instance, feature"):
        feature_batch(4, torch.full((3,), 0.1))


def test_loss_is_importance_weighted_per_instance():
    x = torch.ones(4, 2, 3)
    out = torch.zeros(4, 2, 3)
    importance = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    torch.testing.assert_close(importance_weighted_loss(out, x, importance), torch.tensor([3.0, 1.0]))


def test_a_dense_toy_keeps_two_features_and_a_sparse_one_superposes_more():
    """Two instances, five features in two dimensions: dense data keeps the two most important
    features and drops the rest; very sparse data represents more than two, sharing dimensions."""
    importance = (0.7 ** torch.arange(5.0))[None].repeat(2, 1)
    probability = torch.tensor([[1.0], [0.03]]).repeat(1, 5)
    model = ToyModel(n_instances=2, n_features=5, d_hidden=2, seed=0)
    loss = train_toy(model, probability, importance, steps=1500, batch=256, lr=2e-2, seed=0)
    assert loss.shape == (2,) and torch.isfinite(loss).all()
    dense, sparse = geometry(model.W.detach())
    assert dense.n_represented == 2 and dense.n_superposed == 0
    assert sparse.n_represented > 2 and sparse.n_superposed > 0
