"""Training a sparse dictionary on streamed activations, reviving dead features (resampling for
ReLU, the AuxK loss for TopK and JumpReLU), steering a JumpReLU dictionary's L0 to its target.

Training the shipped SAE from its recipe is :mod:`course.training.sae`.

The trainer takes ``(x, target)`` batches: an SAE is the case ``target == x``; a transcoder
(chapter 7) passes the MLP's input and output with the same code.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import torch
from torch import Tensor
from tqdm.auto import tqdm

from course.saes.model import DictionaryConfig, SparseDictionary, dictionary_loss

SHIPPED = Path(__file__).resolve().parents[1] / "assets" / "course-sae"
# The shipped SAE's recipe: everything that decides its weights.
RECIPE = dict(hook_name="blocks.1.hook_resid_post", d_sae=1024, activation="topk", k=16, tokens=1_200_000,
              batch_size=4096, lr=2e-3, seed=0, resample_every=10)


@dataclass
class TrainLog:
    steps: list[int] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    explained_variance: list[float] = field(default_factory=list)
    l0: list[float] = field(default_factory=list)
    l0_coeff: list[float] = field(default_factory=list)       # JumpReLU's L0 penalty weight
    resampled: list[tuple[int, int]] = field(default_factory=list)   # (step, features resampled)
    seconds: float = 0.0


def auxk_loss(sae: SparseDictionary, x: Tensor, target: Tensor, f: Tensor, dead: Tensor, k_aux: int) -> Tensor:
    """Gao et al.'s auxiliary loss for TopK: the dead features' ``k_aux`` largest pre-activations
    reconstruct what the live ones missed, so dead features get gradient and come back."""
    error = (target - sae.decode(f)).detach()
    pre = sae.pre_activations(x).masked_fill(~dead, float("-inf"))
    k = min(k_aux, int(dead.sum()))
    values, idx = pre.topk(k, dim=-1)
    aux = torch.zeros_like(pre).scatter(-1, idx, values.relu())
    return (aux @ sae.W_dec - error).pow(2).sum(-1).mean()


AUX_COEFF = 1 / 32


def training_step(sae: SparseDictionary, optimizer, x: Tensor, target: Tensor | None = None,
                  dead: Tensor | None = None, l0_coeff: float = 0.0) -> tuple[Tensor, Tensor]:
    """One step: loss, gradients, no change of decoder norms, Adam, then unit-norm decoder rows.
    ``dead`` (a TopK or JumpReLU dictionary's features that have not fired for a while) adds the
    AuxK loss; ``l0_coeff`` weighs a JumpReLU dictionary's L0 penalty.
    Returns (loss, feature activations), both detached."""
    optimizer.zero_grad(set_to_none=True)
    with torch.enable_grad():        # callers (notebooks, tests) may have switched gradients off
        loss, f = dictionary_loss(sae, x, target, l0_coeff)
        total = loss
        if dead is not None and dead.any() and sae.cfg.activation in ("topk", "jumprelu"):
            total = loss + AUX_COEFF * auxk_loss(sae, x, x if target is None else target, f, dead,
                                                 k_aux=max(1, sae.cfg.d_out // 2))
        total.backward()
    sae.remove_parallel_gradient()
    optimizer.step()
    sae.normalize_decoder()
    return loss.detach(), f.detach()


@torch.no_grad()
def resample_dead(sae: SparseDictionary, dead: Tensor, x: Tensor, target: Tensor, generator=None) -> int:
    """Give each dead feature a new direction: the (normalised) residual of an input the
    dictionary reconstructs badly, drawn with probability proportional to its squared error
    (Bricken et al. 2023); the encoder column is the input's direction at a fifth of the live features' norm, its bias zero."""
    idx = dead.nonzero().flatten()
    if len(idx) == 0:
        return 0
    error = (sae(x) - target).pow(2).sum(-1)
    picks = torch.multinomial(error / error.sum(), len(idx), replacement=len(idx) > len(error), generator=generator)
    directions = target[picks] - sae.b_dec
    directions = directions / directions.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    sae.W_dec[idx] = directions
    alive_norm = sae.W_enc[:, ~dead].norm(dim=0).mean() if (~dead).any() else 1.0
    inputs = x[picks] / x[picks].norm(dim=-1, keepdim=True).clamp_min(1e-8)
    sae.W_enc[:, idx] = (inputs * alive_norm * 0.2).T   # small: at full scale they crowd the live features out of the top k
    sae.b_enc[idx] = 0.0
    return len(idx)


@torch.no_grad()
def init_jumprelu(sae: SparseDictionary, x: Tensor, target: Tensor, l0: float) -> tuple[float, float]:
    """Start a JumpReLU dictionary at its target L0 in the target's units; return the L0
    coefficient to start from and the factor the encoder was scaled by. Each threshold is the quantile of its feature's pre-activations on
    ``x`` that lets ``k`` features per token through on average (no feature starts dead); the
    encoder is scaled so that the mean threshold is half the activation a feature would need if
    ``k`` of them shared the target's variance V equally (``sqrt(V / k) / 2``: the jump a feature
    makes when it turns on is small against what it may explain); the bandwidth ε is half the
    median threshold (the paper's ε is of the order of its initial threshold). The coefficient
    starts at the mean squared threshold: the most a feature at its threshold can add to the error."""
    pre = sae.pre_activations(x).float()
    q = torch.quantile(pre, 1 - l0 / sae.d_sae, dim=0).clamp_min(1e-6)
    variance = float((target - target.mean(0)).pow(2).sum(-1).mean())
    scale = 0.5 * (variance / l0) ** 0.5 / float(q.mean())
    sae.W_enc.mul_(scale)
    sae.b_enc.mul_(scale)
    sae.log_threshold.copy_((q * scale).log())
    sae.cfg.bandwidth = float(sae.threshold.median()) / 2
    return float(sae.threshold.pow(2).mean()), scale


L0_RATE = 0.05     # JumpReLU: log of the L0 coefficient moves by this times the relative L0 error per step
L0_START = 8       # JumpReLU: the L0 target starts at this times k and falls to k over the first half


def l0_target(k: int, frac: float) -> float:
    """JumpReLU's L0 target after ``frac`` of training: ``L0_START * k`` falling geometrically to
    ``k`` at half-way (features learn directions while many fire, then the penalty prunes them)."""
    return k * L0_START ** max(0.0, 1 - frac / 0.5)


def train(sae: SparseDictionary, batches: Iterable[tuple[Tensor, Tensor]], n_tokens: int, lr: float = 2e-3,
          resample_every: int = 40, progress: bool = True, on_step: Callable | None = None,
          seed: int = 0) -> TrainLog:
    """Train on ``(x, target)`` batches until ``n_tokens`` tokens are seen.

    Adam (β = 0.9, 0.999) with the learning rate decaying linearly to zero over the last fifth.
    Dead features: a TopK dictionary gets the AuxK loss on features that fired on none of the last
    ``resample_every`` steps' tokens (Gao et al. 2024); a ReLU one has them resampled every
    ``resample_every`` steps (:func:`resample_dead`, Bricken et al. 2023).
    JumpReLU: :func:`init_jumprelu` on the first batch sets the scale, thresholds, bandwidth and
    the L0 penalty's coefficient λ, which then acts as a Lagrange multiplier for "L0 = k": after
    each step ``log λ`` moves by ``L0_RATE`` times the batch's ``(L0 − k) / k`` (dual ascent, capped
    at 1), so every layer ends near k features per token whatever its scale, with nothing to tune per layer.
    ``on_step(step, tokens, sae)`` may return True to stop.
    """
    optimizer = torch.optim.Adam(sae.parameters(), lr=lr)
    log = TrainLog()
    g = torch.Generator().manual_seed(seed)
    fired = torch.zeros(sae.d_sae, dtype=torch.bool)
    idle = torch.zeros(sae.d_sae, dtype=torch.long)          # steps since each feature last fired
    topk = sae.cfg.activation == "topk"
    jump = sae.cfg.activation == "jumprelu"
    auxk = topk or jump
    l0_coeff = 0.0
    seen, step, start = 0, 0, time.perf_counter()
    bar = tqdm(total=n_tokens, unit="tok", unit_scale=True, disable=not progress, delay=1, leave=False)
    for x, target in batches:
        if seen >= n_tokens:
            break
        if jump and step == 0:
            l0_coeff, scale = init_jumprelu(sae, x, target, l0_target(sae.cfg.k, 0.0))
            # Adam's steps have a fixed size: the encoder's learning rate scales with its weights
            enc = [sae.W_enc, sae.b_enc]
            optimizer = torch.optim.Adam([{"params": enc, "scale": scale},
                                          {"params": [p for p in sae.parameters() if all(p is not e for e in enc)]}],
                                         lr=lr)
        frac = seen / n_tokens
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("scale", 1.0) * min(1.0, (1 - frac) / 0.2)
        dead = (idle >= resample_every).to(x.device) if auxk and resample_every else None
        loss, f = training_step(sae, optimizer, x, target, dead, l0_coeff)
        if jump:
            l0_now = float((f > 0).float().sum(-1).mean())
            goal = l0_target(sae.cfg.k, frac)
            l0_coeff *= math.exp(L0_RATE * min(1.0, (l0_now - goal) / goal))
        now = (f > 0).any(0).cpu()
        fired |= now
        idle = torch.where(now, 0, idle + 1)
        seen += x.shape[0]
        step += 1
        bar.update(x.shape[0])
        if step % 10 == 0 or seen >= n_tokens:
            with torch.no_grad():
                recon = sae.decode(f)
                ev = 1 - (recon - target).pow(2).sum() / (target - target.mean(0)).pow(2).sum()
            log.steps.append(step)
            log.tokens.append(seen)
            log.loss.append(float(loss))
            log.explained_variance.append(float(ev))
            log.l0.append(float((f > 0).float().sum(-1).mean()))
            log.l0_coeff.append(l0_coeff)
            bar.set_postfix(expl_var=f"{float(ev):.3f}", l0=f"{log.l0[-1]:.1f}")
        if resample_every and step % resample_every == 0 and not auxk:
            if frac < 0.7 and (~fired).any():       # late resampling would leave features half-trained
                n = resample_dead(sae, ~fired.to(x.device), x, target, g)
                log.resampled.append((step, n))
                for state in optimizer.state.values():       # fresh moments for everything: simplest and safe
                    for v in state.values():
                        if isinstance(v, Tensor) and v.dim() > 0:
                            v.zero_()
            fired.zero_()
        if on_step is not None and on_step(step, seen, sae):
            break
    bar.close()
    log.seconds = time.perf_counter() - start
    return log


def train_sae(model, hook_name: str = RECIPE["hook_name"], d_sae: int = RECIPE["d_sae"],
              activation: str = RECIPE["activation"], k: int = RECIPE["k"], l1_coeff: float = 0.0,
              tokens: int = RECIPE["tokens"], batch_size: int = RECIPE["batch_size"], lr: float = RECIPE["lr"],
              seed: int = RECIPE["seed"], resample_every: int = RECIPE["resample_every"],
              target_hook_name: str = "", progress: bool = True, on_step=None,
              center_input: bool = False) -> tuple[SparseDictionary, TrainLog]:
    """A dictionary trained on the course model's activations at ``hook_name`` (predicting
    ``target_hook_name`` if given: a transcoder). Deterministic for a seed on one device."""
    from course.saes.activations import ActivationStream
    from course.saes.io import model_fingerprint

    torch.manual_seed(seed)
    d_model = model.cfg.d_model
    target_dim = model.cfg.d_mlp if target_hook_name.endswith("mlp.hook_post") else d_model
    input_dim = model.cfg.d_mlp if hook_name.endswith("mlp.hook_post") else d_model
    cfg = DictionaryConfig(d_in=input_dim, d_sae=d_sae, d_out=target_dim, activation=activation, k=k,
                           l1_coeff=l1_coeff, hook_name=hook_name, target_hook_name=target_hook_name,
                           model_name=getattr(model, "name", "course-gpt2"),
                           model_fingerprint=model_fingerprint(model), seed=seed)
    sae = SparseDictionary(cfg).to(model.device)
    stream = ActivationStream(model, hook_name, target_hook_name or None, batch_size=batch_size, seed=seed)
    with torch.no_grad():       # start the decoder bias at the data's mean (the usual initialisation)
        x0, y0 = next(iter(ActivationStream(model, hook_name, target_hook_name or None, batch_size=batch_size,
                                            seed=seed + 1)))
        sae.b_dec.copy_(y0.mean(0))
        if target_hook_name and center_input:
            # A transcoder's input (a normalised stream) has a large shared direction; features that
            # start aligned with it fire on most tokens and crowd the rest out of the top k.
            sae.x_center = x0.mean(0).to(sae.W_enc.device)
    log = train(sae, stream, tokens, lr=lr, resample_every=resample_every, progress=progress, on_step=on_step,
                seed=seed)
    sae.fold_centering()
    return sae, log
