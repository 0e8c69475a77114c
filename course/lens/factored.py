"""A low-rank matrix kept as its two factors: ``M = A @ B`` with a small inner dimension.

``W_Q W_Kᵀ`` and ``W_V W_O`` are ``d_model x d_model`` but have rank at most ``d_head``;
through the embeddings they become ``d_vocab x d_vocab``. Their eigenvalues, singular
values and norms all follow from ``d_head x d_head`` products, without ever forming
the big matrix:

- the non-zero eigenvalues of ``A B`` are the eigenvalues of ``B A``;
- ``‖A B‖_F² = trace((AᵀA)(B Bᵀ))``;
- with ``A = Q_A R_A`` and ``Bᵀ = Q_B R_B``, ``A B = Q_A (R_A R_Bᵀ) Q_Bᵀ``, so the singular
  values of ``A B`` are those of the small ``R_A R_Bᵀ``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class FactoredMatrix:
    """``A [..., m, k] @ B [..., k, n]`` kept factored (``k`` small)."""

    A: Tensor
    B: Tensor

    def __post_init__(self):
        if self.A.shape[-1] != self.B.shape[-2]:
            raise ValueError(f"FactoredMatrix needs A [..., m, k] and B [..., k, n]; got inner sizes "
                             f"{self.A.shape[-1]} and {self.B.shape[-2]}.")

    @property
    def shape(self) -> torch.Size:
        return torch.Size((*self.A.shape[:-1], self.B.shape[-1]))

    @property
    def inner(self) -> int:
        return self.A.shape[-1]

    def __matmul__(self, other: Tensor | "FactoredMatrix") -> "FactoredMatrix":
        if isinstance(other, FactoredMatrix):
            return FactoredMatrix(self.A, (self.B @ other.A) @ other.B)
        return FactoredMatrix(self.A, self.B @ other)

    def __rmatmul__(self, other: Tensor) -> "FactoredMatrix":
        return FactoredMatrix(other @ self.A, self.B)

    @property
    def T(self) -> "FactoredMatrix":
        return FactoredMatrix(self.B.transpose(-1, -2), self.A.transpose(-1, -2))

    def full(self) -> Tensor:
        """The whole matrix (only for small ones, or to check the factored answers)."""
        return self.A @ self.B

    def eigenvalues(self) -> Tensor:
        """The ``k`` eigenvalues of ``B A``: every non-zero eigenvalue of ``A B`` (complex) (square only)."""
        if self.A.shape[-2] != self.B.shape[-1]:
            raise ValueError(f"eigenvalues need a square matrix; this one is {list(self.shape)}.")
        return torch.linalg.eigvals(self.B @ self.A)

    def frobenius_norm(self) -> Tensor:
        ata = self.A.transpose(-1, -2) @ self.A
        bbt = self.B @ self.B.transpose(-1, -2)
        return (ata * bbt.transpose(-1, -2)).sum((-1, -2)).clamp_min(0).sqrt()

    def singular_values(self) -> Tensor:
        """The ``k`` largest singular values, from a ``k x k`` matrix."""
        _, r_a = torch.linalg.qr(self.A)
        _, r_b = torch.linalg.qr(self.B.transpose(-1, -2))
        return torch.linalg.svdvals(r_a @ r_b.transpose(-1, -2))

    def rank(self, tol: float = 1e-5) -> int:
        s = self.singular_values()
        return int((s > tol * s.max()).sum())
