"""A linear probe for the carry, by layer and position, and ablating the direction it finds."""

from __future__ import annotations

import torch
from torch import Tensor

from course.arithmetic.batch import AdditionBatch, answer_correct


def carry_labels(batch: AdditionBatch) -> Tensor:
    """``[n]`` float: 1 where the ones digits carry into the tens."""
    return batch.carry.float()


@torch.no_grad()
def residuals(model, batch: AdditionBatch, positions: list[int]) -> Tensor:
    """``[layer + 1, n, len(positions), d_model]``: the stream entering each block, and after the last."""
    names = [f"blocks.{l}.hook_resid_pre" for l in range(model.cfg.n_layers)]
    names.append(f"blocks.{model.cfg.n_layers - 1}.hook_resid_post")
    _, cache = model.run_with_cache(batch.tokens.to(model.device), names_filter=names)
    return torch.stack([cache[n][:, positions].cpu() for n in names])


def fit_probe(x: Tensor, y: Tensor, steps: int = 200, lr: float = 0.1, weight_decay: float = 1e-3,
              seed: int = 0) -> tuple[Tensor, Tensor]:
    """Logistic regression, full batch: ``x [n, d]``, ``y [n]`` in {0, 1} -> (w [d], b [])."""
    torch.manual_seed(seed)
    mean, std = x.mean(0), x.std(0) + 1e-6
    w = torch.zeros(x.shape[1], requires_grad=True)
    b = torch.zeros((), requires_grad=True)
    opt = torch.optim.Adam([w, b], lr=lr, weight_decay=weight_decay)
    z = (x - mean) / std
    with torch.enable_grad():
        for _ in range(steps):
            loss = torch.nn.functional.binary_cross_entropy_with_logits(z @ w + b, y.float())
            opt.zero_grad()
            loss.backward()
            opt.step()
    w_raw = (w / std).detach()
    return w_raw, (b - (mean * w_raw).sum()).detach()


def probe_accuracy(x: Tensor, y: Tensor, w: Tensor, b: Tensor) -> float:
    return float(((x @ w + b > 0).float() == y.float()).float().mean())


def probe_grid(model, train: AdditionBatch, test: AdditionBatch, positions: list[int]) -> Tensor:
    """``[layer + 1, len(positions)]``: held-out accuracy of a carry probe trained at each point."""
    xs, xt = residuals(model, train, positions), residuals(model, test, positions)
    ys, yt = carry_labels(train), carry_labels(test)
    out = torch.zeros(xs.shape[0], len(positions))
    for l in range(xs.shape[0]):
        for i in range(len(positions)):
            w, b = fit_probe(xs[l, :, i], ys)
            out[l, i] = probe_accuracy(xt[l, :, i], yt, w, b)
    return out


def ablate_direction(model, batch: AdditionBatch, direction: Tensor, layer: int, from_pos: int,
                     mean_value: float | None = None) -> Tensor:
    """``answer_correct`` with the stream entering ``layer`` (or after the last block, when
    ``layer == n_layers``) set to ``mean_value`` along ``direction`` (unit-normalized) at every
    position from ``from_pos`` on; ``mean_value`` defaults to the batch's mean projection there."""
    d = (direction / direction.norm()).to(model.device)
    name = (f"blocks.{layer}.hook_resid_pre" if layer < model.cfg.n_layers
            else f"blocks.{model.cfg.n_layers - 1}.hook_resid_post")
    if mean_value is None:
        mean_value = float((residuals(model, batch, [from_pos])[layer, :, 0].to(model.device) @ d).mean())

    def hook(x, hook):
        x = x.clone()
        proj = x[:, from_pos:] @ d
        x[:, from_pos:] += (mean_value - proj)[..., None] * d
        return x
    return answer_correct(model, batch, fwd_hooks=[(name, hook)])


def stream_name(model, layer: int, mid: bool = False) -> str:
    """The hook of the stream entering block ``layer`` (after the last when ``layer == n_layers``),
    or, with ``mid``, between block ``layer``'s attention and its MLP."""
    if mid:
        return f"blocks.{layer}.hook_resid_mid"
    return (f"blocks.{layer}.hook_resid_pre" if layer < model.cfg.n_layers
            else f"blocks.{model.cfg.n_layers - 1}.hook_resid_post")


@torch.no_grad()
def stream_at_digit(model, batch: AdditionBatch, name: str, target: str = "tens") -> Tensor:
    """``[n, d_model]``: the stream at hook ``name``, at each line's position predicting its ``target`` digit."""
    _, cache = model.run_with_cache(batch.tokens.to(model.device), names_filter=name)
    at = (batch.tens_pos if target == "tens" else batch.ones_pos) - 1
    return cache[name][torch.arange(len(batch.prompts)), at.to(model.device)].cpu()


def mean_difference(x: Tensor, labels: Tensor) -> Tensor:
    """``[d]``: the mean of ``x [n, d]`` over rows where ``labels`` is true minus the mean over the rest."""
    labels = labels.bool()
    return x[labels].mean(0) - x[~labels].mean(0)


def _setting_hook(model, at: Tensor, direction: Tensor, value: float):
    """A forward hook that sets the stream of line i at position ``at[i]`` to ``value`` along ``direction``."""
    d = (direction / direction.norm()).to(model.device)
    q = at.to(model.device)
    rows = torch.arange(len(q), device=model.device)

    def hook(x, hook):
        x = x.clone()
        v = x[rows, q]
        x[rows, q] = v + (value - v @ d)[:, None] * d
        return x
    return hook


def _digit_pos(batch: AdditionBatch, target: str) -> Tensor:
    return (batch.tens_pos if target == "tens" else batch.ones_pos) - 1


@torch.no_grad()
def set_at_digit(model, batch: AdditionBatch, name: str, direction: Tensor, value: float, target: str = "tens",
                 batch_size: int = 512) -> Tensor:
    """``answer_correct`` with the stream at hook ``name`` set to ``value`` along ``direction``
    (unit-normalized), only at each line's position predicting its ``target`` digit."""
    out = []
    for s in range(0, len(batch.prompts), batch_size):
        part = batch.select(slice(s, s + batch_size))
        hook = _setting_hook(model, _digit_pos(part, target), direction, value)
        out.append(answer_correct(model, part, batch_size=batch_size, fwd_hooks=[(name, hook)]))
    return torch.cat(out)


@torch.no_grad()
def written_at_digit(model, batch: AdditionBatch, name: str, direction: Tensor, value: float,
                     target: str = "tens") -> list[str]:
    """The ``target`` digit each line's model writes (its top prediction, teacher-forced) with the same
    edit as ``set_at_digit``."""
    at = _digit_pos(batch, target)
    logits = model.run_with_hooks(batch.tokens.to(model.device),
                                  [(name, _setting_hook(model, at, direction, value))])
    top = logits[torch.arange(len(at)), at.to(model.device)].argmax(-1).tolist()
    return [model.tokenizer.decode([t]).strip() for t in top]
