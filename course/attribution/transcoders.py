"""One transcoder per MLP layer: reads the MLP's normalized input, predicts the MLP's output.

A transcoder is :class:`course.saes.SparseDictionary` with input site
``blocks.{l}.ln2.hook_normalized`` (the stream after ln_2's centring and scaling, before its
weight and bias; the transcoder's encoder absorbs those) and target site ``blocks.{l}.hook_mlp_out``.
Training, resampling, metrics and the file format are chapter 5's (``course.saes``).

    python -m course.training.transcoders          # reproduces course/assets/course-transcoders
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from course.saes import (SparseDictionary, StaleSAEError, explained_variance, l0, load_sae, model_fingerprint,
                         read_sites, save_sae, train_sae)
from course.saes.metrics import evaluation_tokens

SHIPPED = Path(__file__).resolve().parents[1] / "assets" / "course-transcoders"
RETRAIN = "python -m course.training.transcoders"
# Everything that decides the shipped transcoders' weights (kept small: the course model may change).
# center_input: the input's mean is subtracted while training (folded into b_enc when saved):
# without it, the features aligned with the normalised stream's shared direction fire on most
# tokens and 84-91% of the others never fire (layers 0-2 of the v2 transcoders). resample_every 8
# batches of 512 = 4,096 tokens: AuxK treats a feature idle that long as dead, the window the card's
# dead share is measured on.
RECIPE = dict(d_sae=768, activation="topk", k=12, tokens=800_000, batch_size=512, lr=2e-3, seed=0,
              resample_every=8, center_input=True)


def input_site(layer: int) -> str:
    return f"blocks.{layer}.ln2.hook_normalized"


def output_site(layer: int) -> str:
    return f"blocks.{layer}.hook_mlp_out"


class TranscoderSet:
    """``transcoders[l]`` replaces MLP ``l``; all trained on one model (same fingerprint)."""

    def __init__(self, transcoders: list[SparseDictionary]):
        for layer, tc in enumerate(transcoders):
            if tc.cfg.hook_name != input_site(layer) or tc.cfg.target_hook_name != output_site(layer):
                raise ValueError(f"transcoder {layer} reads {tc.cfg.hook_name} -> {tc.cfg.target_hook_name}; "
                                 f"expected {input_site(layer)} -> {output_site(layer)}")
        self.transcoders = list(transcoders)

    def __len__(self) -> int:
        return len(self.transcoders)

    def __getitem__(self, layer: int) -> SparseDictionary:
        return self.transcoders[layer]

    def __iter__(self):
        return iter(self.transcoders)

    @property
    def fingerprint(self) -> str:
        return self.transcoders[0].cfg.model_fingerprint

    def check_fresh(self, model) -> None:
        """Raise :class:`course.saes.StaleSAEError`, saying how to retrain, unless every transcoder was
        trained on ``model``'s weights."""
        now = model_fingerprint(model)
        stale = [l for l, tc in enumerate(self) if tc.cfg.model_fingerprint != now]
        if stale:
            raise StaleSAEError(f"Transcoders for layers {stale} were trained on model weights "
                                f"{self[stale[0]].cfg.model_fingerprint or '(unknown)'}, but the model loaded now has "
                                f"weights {now}: the model changed. Retrain with: {RETRAIN}")

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        for layer, tc in enumerate(self):
            save_sae(tc, path / f"layer_{layer}")
        return path

    @classmethod
    def load(cls, path: str | Path, device="cpu") -> "TranscoderSet":
        path = Path(path)
        layers = sorted(int(p.name.split("_")[1]) for p in path.glob("layer_*") if (p / "cfg.json").exists())
        if layers != list(range(len(layers))) or not layers:
            raise FileNotFoundError(f"No transcoders (layer_0 ... layer_N) in {path}. Train them with: {RETRAIN}")
        return cls([load_sae(path / f"layer_{l}", device=device) for l in layers])


def load_shipped_transcoders(model=None, strict: bool = False) -> TranscoderSet:
    """The transcoders shipped in ``course/assets/course-transcoders``. With ``model``, their
    fingerprint is checked: ``strict`` raises if stale, else a warning says so."""
    tcs = TranscoderSet.load(SHIPPED, device=model.device if model is not None else "cpu")
    if model is not None:
        try:
            tcs.check_fresh(model)
        except StaleSAEError as e:
            if strict:
                raise
            warnings.warn(str(e), stacklevel=2)
    return tcs


def train_transcoders(model, layers=None, progress: bool = True, **recipe) -> tuple[TranscoderSet, list]:
    """A transcoder per layer (default: every layer), by chapter 5's trainer. ``recipe`` overrides
    :data:`RECIPE`; the seed for layer ``l`` is ``seed + l``. Returns (set, training logs)."""
    r = {**RECIPE, **recipe}
    layers = range(model.cfg.n_layers) if layers is None else layers
    out, logs = [], []
    for layer in layers:
        tc, log = train_sae(model, input_site(layer), r["d_sae"], r["activation"], r["k"], r.get("l1_coeff", 0.0),
                            r["tokens"], r["batch_size"], r["lr"], r["seed"] + layer, r["resample_every"],
                            target_hook_name=output_site(layer), progress=progress,
                            center_input=r.get("center_input", False))
        out.append(tc)
        logs.append(log)
    return TranscoderSet(out), logs


def replacement_hooks(tcs: TranscoderSet, layers=None) -> list:
    """Forward hooks that replace each MLP's output by its transcoder's prediction from the
    (possibly already replaced) stream: the "replacement model" without error terms."""
    layers = range(len(tcs)) if layers is None else layers
    seen: dict[int, Tensor] = {}
    hooks = []
    for layer in layers:
        def read(x, hook, layer=layer):
            seen[layer] = x

        def write(x, hook, layer=layer):
            return tcs[layer](seen[layer]).to(x.dtype)

        hooks += [(input_site(layer), read), (output_site(layer), write)]
    return hooks


@torch.no_grad()
def replaced_loss(model, tcs: TranscoderSet, tokens: Tensor, layers=None) -> float:
    """Mean next-token loss with the MLPs ``layers`` (default all) replaced by their transcoders."""
    return float(model.run_with_hooks(tokens, fwd_hooks=replacement_hooks(tcs, layers), return_type="loss"))


@dataclass
class TranscoderMetrics:
    layer: int
    fvu: float              # fraction of the MLP output's variance unexplained
    l0: float               # active features per token
    dead: float             # share of features never active on the evaluation tokens
    alone_loss: float       # model loss with only this MLP replaced

    def as_dict(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


@torch.no_grad()
def dead_share(model, tcs: TranscoderSet, tokens: Tensor, batch_rows: int = 64) -> list[float]:
    """Per layer, the share of features active on none of ``tokens [rows, pos]`` (read ``batch_rows``
    rows at a time, so a long window fits in memory)."""
    fired = [torch.zeros(tc.d_sae, dtype=torch.bool, device=model.device) for tc in tcs]
    for start in range(0, tokens.shape[0], batch_rows):
        rows = tokens[start:start + batch_rows]
        acts = read_sites(model, rows, [input_site(layer) for layer in range(len(tcs))])
        for layer, tc in enumerate(tcs):
            fired[layer] |= (tc.encode(acts[input_site(layer)].flatten(0, 1)) > 0).any(0).to(model.device)
    return [float((~f).float().mean()) for f in fired]


@torch.no_grad()
def evaluate_transcoders(model, tcs: TranscoderSet, tokens: Tensor | None = None) -> dict:
    """Per layer: FVU, L0, dead share and the loss with that MLP replaced; overall: the clean loss,
    the loss with every MLP replaced, and with every MLP's output zeroed (held-out corpus text)."""
    tokens = evaluation_tokens(model) if tokens is None else tokens
    per_layer = []
    for layer, tc in enumerate(tcs):
        acts = read_sites(model, tokens, [input_site(layer), output_site(layer)])
        x, y = acts[input_site(layer)].flatten(0, 1), acts[output_site(layer)].flatten(0, 1)
        f = tc.encode(x)
        per_layer.append(TranscoderMetrics(layer, 1 - explained_variance(tc.decode(f), y), l0(f),
                                           float(((f > 0).sum(0) == 0).float().mean()),
                                           replaced_loss(model, tcs, tokens, [layer])))
    zero = [(output_site(l), lambda x, hook: torch.zeros_like(x)) for l in range(len(tcs))]
    return {"layers": per_layer, "clean_loss": float(model(tokens, return_type="loss")),
            "replaced_loss": replaced_loss(model, tcs, tokens),
            "mlps_zeroed_loss": float(model.run_with_hooks(tokens, fwd_hooks=zero, return_type="loss"))}
