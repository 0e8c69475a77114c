"""A one-layer GPT-2 that learns ``a + b mod 113`` and groks it (chapter 6).

    python -m course.training.modular --out course/assets/modular-addition    # train (a few CPU minutes)
    python -m course.training.modular --evaluate [PATH]                         # train/test accuracy

Inputs are three tokens ``[a, b, =]`` with ``a, b`` in ``0..112`` (token ids are the
numbers) and ``=`` as token 113; the answer is read at the ``=`` position. A seeded
fraction of the 113² pairs is the training set; the rest is held out. Full-batch
AdamW with strong weight decay: the model first memorizes, then (much later)
generalizes — grokking — by way of a Fourier algorithm chapter 6 takes apart.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

P = 113
EQUALS = P


@dataclass
class ModularConfig:
    seed: int = 0
    train_fraction: float = 0.4
    steps: int = 25_000
    lr: float = 1e-3
    weight_decay: float = 1.0
    d_model: int = 128
    n_head: int = 4
    d_mlp: int = 512
    stop_at_test_accuracy: float = 0.999   # stop once grokked (checked every 100 steps)
    threads: int = 1
    loss_every: int = 10                   # train/test loss logged this often (the grokking curve)
    checkpoints: str = "0,100,200,300,400,500,600,700"   # steps whose weights ship (float16)


CHECKPOINTS_FILE = "checkpoints.safetensors"


def all_pairs() -> torch.Tensor:
    """Every input ``[P*P, 3]``: rows ``[a, b, =]``, a-major."""
    a, b = torch.meshgrid(torch.arange(P), torch.arange(P), indexing="ij")
    return torch.stack([a.flatten(), b.flatten(), torch.full((P * P,), EQUALS)], dim=1)


def labels(inputs: torch.Tensor) -> torch.Tensor:
    return (inputs[:, 0] + inputs[:, 1]) % P


def split(seed: int = 0, train_fraction: float = 0.4) -> tuple[torch.Tensor, torch.Tensor]:
    """(train indices, test indices) into :func:`all_pairs`."""
    order = torch.randperm(P * P, generator=torch.Generator().manual_seed(seed))
    cut = int(train_fraction * P * P)
    return order[:cut], order[cut:]


def build_model(cfg: ModularConfig):
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=P + 1, n_positions=3, n_embd=cfg.d_model, n_layer=1, n_head=cfg.n_head,
                        n_inner=cfg.d_mlp, activation_function="relu", resid_pdrop=0.0, embd_pdrop=0.0,
                        attn_pdrop=0.0, tie_word_embeddings=False, bos_token_id=EQUALS, eos_token_id=EQUALS)
    config._attn_implementation = "eager"
    torch.manual_seed(cfg.seed)
    return GPT2LMHeadModel(config)


def answer_logits(model, inputs: torch.Tensor) -> torch.Tensor:
    """Logits over the P answers at the ``=`` position: ``[batch, P]``."""
    return model(input_ids=inputs.to(next(model.parameters()).device)).logits[:, -1, :P]


@torch.no_grad()
def accuracy(model, cfg_seed: int = 0, train_fraction: float = 0.4) -> dict[str, float]:
    model.eval()
    inputs = all_pairs()
    pred = answer_logits(model, inputs).argmax(-1).cpu()
    right = pred == labels(inputs)
    train, test = split(cfg_seed, train_fraction)
    return {"train_accuracy": float(right[train].float().mean()), "test_accuracy": float(right[test].float().mean())}


def load_checkpoints(path=None) -> dict[int, dict[str, torch.Tensor]]:
    """The shipped training snapshots: ``{step: state_dict (float32)}``, step 0 the initialization."""
    from safetensors.torch import load_file

    from course.models.loading import ASSETS

    path = Path(path) if path else ASSETS / "modular-addition"
    flat = load_file(path / CHECKPOINTS_FILE)
    out: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in flat.items():
        step, name = key.split(".", 1)
        out.setdefault(int(step[4:]), {})[name] = value.float()
    return dict(sorted(out.items()))


def model_at(step: int, path=None):
    """The modular-addition model (with the lens, on the CPU) as it was at shipped checkpoint ``step``."""
    import course

    model = course.load_model(str(path) if path else "modular-addition", device="cpu")
    model.hf.load_state_dict(load_checkpoints(path)[step], strict=False)   # in place: the lens's views stay valid
    return model


def loss_curve(path=None) -> list[dict]:
    """The train/test loss logged every ``loss_every`` steps while the shipped model trained."""
    from course.models.loading import ASSETS

    path = Path(path) if path else ASSETS / "modular-addition"
    return json.loads((path / "loss_curve.json").read_text())
