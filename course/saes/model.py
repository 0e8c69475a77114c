"""A sparse dictionary: untied encoder and decoder, unit-norm decoder rows, ReLU or TopK.

It maps an input activation ``x [.., d_in]`` to ``d_sae`` feature activations and decodes
them into a target activation ``[.., d_out]``. A sparse autoencoder is the case where the
target is the input (``d_out == d_in``, same site); a transcoder (chapter 7) reads one site
(the MLP's input) and predicts another (its output) with the same class and trainer.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor, nn


@dataclass
class DictionaryConfig:
    d_in: int
    d_sae: int
    d_out: int | None = None               # None: the same as d_in (an SAE)
    activation: str = "topk"               # "relu" (with an L1 penalty) or "topk"
    k: int = 16                            # features kept per token, for "topk"
    l1_coeff: float = 0.0                  # the sparsity penalty's weight, for "relu"
    hook_name: str = ""                    # the site read (e.g. "blocks.1.hook_resid_post")
    target_hook_name: str = ""             # the site predicted; "" means hook_name (an SAE)
    model_name: str = "course-gpt2"
    model_fingerprint: str = ""            # of the weights the dictionary was trained on
    seed: int = 0
    extra: dict = field(default_factory=dict)   # training settings and metrics, for the card

    def __post_init__(self):
        if self.d_out is None:
            self.d_out = self.d_in
        if self.activation not in ("relu", "topk"):
            raise ValueError(f'activation is "relu" or "topk"; got {self.activation!r}.')

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

    @property
    def d_sae(self) -> int:
        return self.cfg.d_sae

    def pre_activations(self, x: Tensor) -> Tensor:
        return x @ self.W_enc + self.b_enc

    def encode(self, x: Tensor) -> Tensor:
        """``x [..., d_in]`` -> feature activations ``[..., d_sae]`` (non-negative, sparse)."""
        pre = self.pre_activations(x)
        if self.cfg.activation == "relu":
            return pre.relu()
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
        kind = f"TopK k={c.k}" if c.activation == "topk" else f"ReLU, L1 {c.l1_coeff:g}"
        site = c.hook_name if c.is_autoencoder else f"{c.hook_name} -> {c.target_hook_name}"
        return f"SparseDictionary({c.d_in} -> {c.d_sae} -> {c.d_out}, {kind}, {site or 'no site'})"


def reconstruction_loss(recon: Tensor, target: Tensor) -> Tensor:
    """Squared error summed over the activation's dimensions, averaged over tokens."""
    return (recon - target).pow(2).sum(-1).mean()


def dictionary_loss(sae: SparseDictionary, x: Tensor, target: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """(loss, feature activations). Reconstruction, plus ``l1_coeff`` times the L1 norm of the
    activations for a ReLU dictionary (TopK needs no penalty: k fixes the sparsity)."""
    target = x if target is None else target
    f = sae.encode(x)
    loss = reconstruction_loss(sae.decode(f), target)
    if sae.cfg.activation == "relu":
        loss = loss + sae.cfg.l1_coeff * f.abs().sum(-1).mean()
    return loss, f
