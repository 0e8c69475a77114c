"""A sparse dictionary: untied encoder and decoder, unit-norm decoder rows, ReLU, TopK or JumpReLU.

It maps an input activation ``x [.., d_in]`` to ``d_sae`` feature activations and decodes
them into a target activation ``[.., d_out]``. A sparse autoencoder is the case where the
target is the input (``d_out == d_in``, same site); a transcoder (chapter 7) reads one site
(the MLP's input) and predicts another (its output) with the same class and trainer.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor, nn


ACTIVATIONS = ("relu", "topk", "jumprelu")


def _rectangle(u: Tensor) -> Tensor:
    return ((u > -0.5) & (u < 0.5)).to(u)


class _JumpReLU(torch.autograd.Function):
    """``z · H(z − θ)``; backward: the identity's gradient above θ for ``z``, and for ``θ`` the
    pseudo-derivative ``−(θ/ε) K((z − θ)/ε)`` with a rectangle kernel ``K`` (Rajamanoharan et al. 2024)."""

    @staticmethod
    def forward(ctx, z, theta, eps):
        ctx.save_for_backward(z, theta)
        ctx.eps = eps
        return z * (z > theta)

    @staticmethod
    def backward(ctx, g):
        z, theta = ctx.saved_tensors
        d_theta = -(theta / ctx.eps) * _rectangle((z - theta) / ctx.eps) * g
        return (z > theta) * g, d_theta.reshape(-1, theta.shape[-1]).sum(0), None


class _Step(torch.autograd.Function):
    """``H(z − θ)``; backward: ``−(1/ε) K((z − θ)/ε)`` for ``θ`` and its negation for ``z`` (the step
    depends on ``z − θ`` only; SAE Lens's ``ste_to_input``), so the L0 penalty can lower the
    pre-activations as well as raise the thresholds."""

    @staticmethod
    def forward(ctx, z, theta, eps):
        ctx.save_for_backward(z, theta)
        ctx.eps = eps
        return (z > theta).to(z)

    @staticmethod
    def backward(ctx, g):
        z, theta = ctx.saved_tensors
        d_z = (1 / ctx.eps) * _rectangle((z - theta) / ctx.eps) * g
        return d_z, -d_z.reshape(-1, theta.shape[-1]).sum(0), None


def jumprelu(z: Tensor, theta: Tensor, eps: float) -> Tensor:
    """``z`` where ``z > θ``, else 0, with straight-through gradients to ``θ`` through a window of width ``eps``."""
    return _JumpReLU.apply(z, theta, eps)


def step(z: Tensor, theta: Tensor, eps: float) -> Tensor:
    """``1`` where ``z > θ``, else 0 (the L0 count's terms), with the same pseudo-derivative for ``θ``."""
    return _Step.apply(z, theta, eps)


@dataclass
class DictionaryConfig:
    d_in: int
    d_sae: int
    d_out: int | None = None               # None: the same as d_in (an SAE)
    activation: str = "topk"               # "relu" (with an L1 penalty), "topk", or "jumprelu" (an L0 penalty)
    k: int = 16                            # features kept per token, for "topk"; the target L0, for "jumprelu"
    l1_coeff: float = 0.0                  # the sparsity penalty's weight, for "relu"
    bandwidth: float = 0.1                 # the width of the threshold's pseudo-derivative window, for "jumprelu"
    hook_name: str = ""                    # the site read (e.g. "blocks.1.hook_resid_post")
    target_hook_name: str = ""             # the site predicted; "" means hook_name (an SAE)
    model_name: str = "course-gpt2"
    model_fingerprint: str = ""            # of the weights the dictionary was trained on
    seed: int = 0
    extra: dict = field(default_factory=dict)   # training settings and metrics, for the card

    def __post_init__(self):
        if self.d_out is None:
            self.d_out = self.d_in
        if self.activation not in ACTIVATIONS:
            raise ValueError(f'activation is one of {", ".join(ACTIVATIONS)}; got {self.activation!r}.')

    @property
    def is_autoencoder(self) -> bool:
        return not self.target_hook_name or self.target_hook_name == self.hook_name

    def to_dict(self) -> dict:
        return asdict(self)


class SparseDictionary(nn.Module):
    """``encode``: ``f = act(x W_enc + b_enc)``; ``decode``: ``f W_dec + b_dec``; rows of ``W_dec`` unit norm.

    Shapes follow SAE Lens: ``W_enc [d_in, d_sae]``, ``b_enc [d_sae]``, ``W_dec [d_sae, d_out]``,
    ``b_dec [d_out]``. The input is not shifted by ``b_dec`` before encoding (SAE Lens's
    ``apply_b_dec_to_input=False``): ``b_enc`` absorbs it, and the same code serves ``d_in != d_out``.
    """

    def __init__(self, cfg: DictionaryConfig):
        super().__init__()
        self.cfg = cfg
        g = torch.Generator().manual_seed(cfg.seed)
        W_dec = torch.randn(cfg.d_sae, cfg.d_out, generator=g)
        W_dec /= W_dec.norm(dim=-1, keepdim=True)
        self.W_dec = nn.Parameter(W_dec)
        # The encoder starts as the decoder's transpose where it can (Conerly et al. 2024), scaled
        # so that a random input's reconstruction has about the input's norm.
        W_enc = W_dec.T.clone() if cfg.d_in == cfg.d_out else torch.randn(cfg.d_in, cfg.d_sae, generator=g) / cfg.d_in ** 0.5
        self.W_enc = nn.Parameter(W_enc * (cfg.d_out / cfg.d_sae) ** 0.5)
        self.b_enc = nn.Parameter(torch.zeros(cfg.d_sae))
        self.b_dec = nn.Parameter(torch.zeros(cfg.d_out))
        if cfg.activation == "jumprelu":       # θ = exp(log_threshold) stays positive, so f ≥ 0
            self.log_threshold = nn.Parameter(torch.zeros(cfg.d_sae))
        # Subtracted from the input while training (see :meth:`fold_centering`); None otherwise, and
        # never saved: a saved dictionary has it folded into ``b_enc``.
        self.x_center: Tensor | None = None

    @property
    def threshold(self) -> Tensor:
        """JumpReLU's per-feature thresholds ``θ`` [d_sae]."""
        return self.log_threshold.exp()

    @property
    def d_sae(self) -> int:
        return self.cfg.d_sae

    def pre_activations(self, x: Tensor) -> Tensor:
        if self.x_center is not None:
            x = x - self.x_center
        return x @ self.W_enc + self.b_enc

    @torch.no_grad()
    def fold_centering(self) -> None:
        """Fold the training-time input centre into the encoder bias: ``(x − c) W + b = x W + (b − c W)``,
        so the dictionary computes the same features in the plain SAE Lens form."""
        if self.x_center is not None:
            self.b_enc -= self.x_center @ self.W_enc
            self.x_center = None

    def encode(self, x: Tensor) -> Tensor:
        """``x [..., d_in]`` -> feature activations ``[..., d_sae]`` (non-negative, sparse)."""
        pre = self.pre_activations(x)
        if self.cfg.activation == "relu":
            return pre.relu()
        if self.cfg.activation == "jumprelu":
            return jumprelu(pre, self.threshold, self.cfg.bandwidth)
        values, idx = pre.topk(self.cfg.k, dim=-1)
        return torch.zeros_like(pre).scatter(-1, idx, values.relu())

    def decode(self, f: Tensor) -> Tensor:
        """``f [..., d_sae]`` -> ``[..., d_out]``."""
        return f @ self.W_dec + self.b_dec

    def forward(self, x: Tensor) -> Tensor:
        return self.decode(self.encode(x))

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        """Unit-norm decoder rows: the L1 penalty (and TopK's ranking) cannot be dodged by
        shrinking activations and growing decoder rows."""
        self.W_dec /= self.W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-8)

    def remove_parallel_gradient(self) -> None:
        """Drop the part of each decoder row's gradient along the row (it would only change the
        norm, which :meth:`normalize_decoder` undoes)."""
        if self.W_dec.grad is None:
            return
        parallel = (self.W_dec.grad * self.W_dec).sum(-1, keepdim=True)
        self.W_dec.grad -= parallel * self.W_dec

    def __repr__(self) -> str:
        c = self.cfg
        kind = {"topk": f"TopK k={c.k}", "relu": f"ReLU, L1 {c.l1_coeff:g}",
                "jumprelu": f"JumpReLU, target L0 {c.k}"}[c.activation]
        site = c.hook_name if c.is_autoencoder else f"{c.hook_name} -> {c.target_hook_name}"
        return f"SparseDictionary({c.d_in} -> {c.d_sae} -> {c.d_out}, {kind}, {site or 'no site'})"


def reconstruction_loss(recon: Tensor, target: Tensor) -> Tensor:
    """Squared error summed over the activation's dimensions, averaged over tokens."""
    return (recon - target).pow(2).sum(-1).mean()


def dictionary_loss(sae: SparseDictionary, x: Tensor, target: Tensor | None = None,
                    l0_coeff: float = 0.0) -> tuple[Tensor, Tensor]:
    """(loss, feature activations). Reconstruction, plus ``l1_coeff`` times the L1 norm of the
    activations for a ReLU dictionary, or ``l0_coeff`` times the number of active features (its
    pseudo-derivative reaches the thresholds) for a JumpReLU one (TopK needs no penalty: k fixes
    the sparsity)."""
    target = x if target is None else target
    if sae.cfg.activation == "jumprelu":
        pre = sae.pre_activations(x)
        f = jumprelu(pre, sae.threshold, sae.cfg.bandwidth)
        loss = reconstruction_loss(sae.decode(f), target)
        if l0_coeff:
            loss = loss + l0_coeff * step(pre, sae.threshold, sae.cfg.bandwidth).sum(-1).mean()
        return loss, f
    f = sae.encode(x)
    loss = reconstruction_loss(sae.decode(f), target)
    if sae.cfg.activation == "relu":
        loss = loss + sae.cfg.l1_coeff * f.abs().sum(-1).mean()
    return loss, f
