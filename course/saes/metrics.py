"""How good a dictionary is: sparsity (L0), reconstruction (explained variance), dead and
dense features, and the language-model loss when its reconstruction replaces the activation."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from course.saes.activations import read_sites


def l0(f: Tensor) -> float:
    """Mean number of active features per token; ``f [..., d_sae]``."""
    return float((f > 0).float().sum(-1).mean())


def explained_variance(recon: Tensor, target: Tensor) -> float:
    """1 - (squared error) / (total variance about the mean), over all tokens of ``[n, d]``."""
    error = (recon - target).pow(2).sum()
    total = (target - target.mean(0)).pow(2).sum()
    return float(1 - error / total)


def firing_rates(sae, xs: Tensor, batch: int = 8192) -> Tensor:
    """Share of the tokens ``xs [n, d_in]`` on which each feature is active: ``[d_sae]``."""
    counts = torch.zeros(sae.d_sae, device=xs.device)
    with torch.no_grad():
        for start in range(0, xs.shape[0], batch):
            counts += (sae.encode(xs[start:start + batch]) > 0).float().sum(0)
    return counts / xs.shape[0]


def spliced_loss(model, sae, tokens: Tensor, replace: str = "sae") -> float:
    """Mean next-token loss with the dictionary's target site replaced, through ``run_with_hooks``.

    ``replace``: "sae" (the reconstruction from the input site), "zero" (zeros) or "none" (clean).
    For an SAE the input and target are one site; for a transcoder the input site's activation is
    read first, then the target site is overwritten with the dictionary's output.
    """
    if replace == "none":
        return float(model(tokens, return_type="loss"))
    seen = {}

    def read(x, hook):
        seen["x"] = x

    def write(x, hook):
        if replace == "zero":
            return torch.zeros_like(x)
        return sae(seen.get("x", x) if not sae.cfg.is_autoencoder else x).to(x.dtype)

    hooks = [(sae.cfg.target_hook_name or sae.cfg.hook_name, write)]
    if not sae.cfg.is_autoencoder:
        hooks.insert(0, (sae.cfg.hook_name, read))
    with torch.no_grad():
        return float(model.run_with_hooks(tokens, fwd_hooks=hooks, return_type="loss"))


@dataclass
class Evaluation:
    l0: float
    explained_variance: float
    dead: float                 # share of features never active on the evaluation tokens
    dense: float                # share active on more than 10% of them
    clean_loss: float
    spliced_loss: float
    zero_loss: float

    @property
    def loss_recovered(self) -> float:
        """(zero-ablated loss - spliced loss) / (zero-ablated loss - clean loss): 1 is perfect."""
        return (self.zero_loss - self.spliced_loss) / (self.zero_loss - self.clean_loss)

    def as_dict(self) -> dict:
        return {**{k: round(v, 4) for k, v in self.__dict__.items()}, "loss_recovered": round(self.loss_recovered, 4)}

    def __str__(self) -> str:
        return (f"L0 {self.l0:.1f}, explained variance {self.explained_variance:.3f}, dead {self.dead:.1%}, "
                f"dense {self.dense:.1%}, loss recovered {self.loss_recovered:.3f} (clean {self.clean_loss:.3f}, "
                f"spliced {self.spliced_loss:.3f}, zero-ablated {self.zero_loss:.3f})")


def evaluation_tokens(model, n_rows: int = 64, row_len: int = 64, seed: int = 987_654) -> Tensor:
    """Held-out corpus text (a seed the training stream never uses)."""
    from course.neurons import text_stream

    return text_stream(model, n_rows, row_len, seed=seed).tokens


@torch.no_grad()
def evaluate(model, sae, tokens: Tensor | None = None, batch_rows: int = 64) -> Evaluation:
    """Every metric on ``tokens [row, pos]`` (default: :func:`evaluation_tokens`)."""
    tokens = evaluation_tokens(model) if tokens is None else tokens
    target = sae.cfg.target_hook_name or sae.cfg.hook_name
    xs, ys, losses = [], [], {"none": 0.0, "sae": 0.0, "zero": 0.0}
    for start in range(0, tokens.shape[0], batch_rows):
        rows = tokens[start:start + batch_rows]
        acts = read_sites(model, rows, [sae.cfg.hook_name, target])
        xs.append(acts[sae.cfg.hook_name].flatten(0, 1))
        ys.append(acts[target].flatten(0, 1))
        for kind in losses:
            losses[kind] += spliced_loss(model, sae, rows, kind) * rows.shape[0] / tokens.shape[0]
    x, y = torch.cat(xs), torch.cat(ys)
    f = sae.encode(x)
    rates = (f > 0).float().mean(0)
    return Evaluation(l0(f), explained_variance(sae.decode(f), y), float((rates == 0).float().mean()),
                      float((rates > 0.1).float().mean()), losses["none"], losses["sae"], losses["zero"])
