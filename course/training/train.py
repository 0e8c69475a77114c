"""Train the course GPT-2 from a seed.

    python -m course.training.train --out DIR                        # the shipped model (the defaults)
    python -m course.training.train --out DIR --resume               # continue a run
    python -m course.training.train --out /tmp/smoke --steps 20 --eval-every 0   # a smoke test
    python -m course.training.train --out /tmp/s2 --seed 2           # another seed, same vocabulary

The defaults are the shipped model's settings, read from its ``training_config.json``
(:data:`SHIPPED_CONFIG`), so a bare run reproduces it; ``python -m course.training.reproduce``
checks that bit for bit. Runs of earlier recipes are reproduced from the commits that the
record of runs (``course/assets/course-gpt2/RECIPE_RECORD.md``) names.

Same seed and arguments, same weights (on the same hardware and thread count). It
trains the tokenizer, streams the synthetic corpus (course.data.corpus), logs the
loss and the course's phenomena (course.training.evaluate) at checkpoints, and can
resume from its last checkpoint.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from course.data.corpus import BLOCK_LEN, recipe, training_chunk
from course.training.evaluate import TARGETS, evaluate
from course.models.loading import BUNDLED, default_device
from course.data.vocabulary import single_token_names
from course.models.tokenizer import VOCAB_SIZE
from course.training.tokenizer import train_tokenizer

CHUNK_STEPS = 100   # the data stream is generated 100 steps at a time, each chunk from its own seed
# Checkpoint selection, on validation data only (course.training.evaluate.SPLIT_DATA): among
# evaluations where every floor is met on validation data, keep the one whose weakest
# held-out ability is strongest. The test families, phrasing and sums decide nothing.
SELECTION = "min(ioi_accuracy, ioi_accuracy_unseen_names, fact_accuracy, addition_accuracy) on validation data"
# The shipped model's settings: TrainConfig's defaults, so that a bare command reproduces it.
SHIPPED_CONFIG = BUNDLED["course-gpt2"] / "training_config.json"
_SHIPPED = json.loads(SHIPPED_CONFIG.read_text())


def selection_score(rep) -> float:
    f = rep.figures
    return min(f["ioi_accuracy"], f["ioi_accuracy_unseen_names"], f["fact_accuracy"], f["addition_accuracy"])


@dataclass
class TrainConfig:
    """A training run's settings. Every default is the shipped model's (:data:`SHIPPED_CONFIG`)."""

    seed: int = _SHIPPED["seed"]
    steps: int = _SHIPPED["steps"]
    batch: int = _SHIPPED["batch"]
    lr: float = _SHIPPED["lr"]
    warmup: int = _SHIPPED["warmup"]
    min_lr_ratio: float = _SHIPPED["min_lr_ratio"]
    weight_decay: float = _SHIPPED["weight_decay"]   # on matrices only (optimizer_for)
    clip: float = _SHIPPED["clip"]
    n_layer: int = _SHIPPED["n_layer"]
    n_head: int = _SHIPPED["n_head"]
    d_model: int = _SHIPPED["d_model"]
    threads: int = _SHIPPED["threads"]
    # The tokenizer's seed (-1: the model's). Fixing it while the seed varies keeps the vocabulary,
    # and with it the names kept out of IOI, the same across a seed study.
    tokenizer_seed: int = _SHIPPED["tokenizer_seed"]
    # Comma-separated decays of exponential moving averages of the weights ("" for none). Each
    # average is a shadow model: training never reads it, so the raw trajectory is the one the
    # same seed gives without averages. The raw weights are still evaluated and logged, but with
    # averages the shipped weights are chosen among the averages only.
    ema_decays: str = _SHIPPED["ema_decays"]
    # The corpus recipe (course.data.corpus.RECIPES).
    recipe: str = _SHIPPED["recipe"]


def ema_decay_list(cfg: TrainConfig) -> list[float]:
    """The decays of ``cfg.ema_decays``, each in (0, 1); a clear error otherwise."""
    decays = []
    for part in cfg.ema_decays.split(","):
        if not part.strip():
            continue
        try:
            d = float(part)
        except ValueError:
            raise ValueError(f"--ema-decays takes numbers separated by commas, like 0.999,0.9998; got {cfg.ema_decays!r}") from None
        if not 0.0 < d < 1.0:
            raise ValueError(f"an EMA decay must lie strictly between 0 and 1 (e.g. 0.999); got {d}")
        decays.append(d)
    return decays


@torch.no_grad()
def update_averages(shadows: dict, model) -> None:
    """One EMA step: every shadow's parameters move toward ``model``'s by (1 - decay)."""
    live = list(model.parameters())
    for decay, shadow in shadows.items():
        torch._foreach_lerp_(list(shadow.parameters()), live, 1.0 - decay)


class Selection:
    """The checkpoint choice (SELECTION) among the evaluations of some of the weights ("raw",
    "ema0.999", ...): the best score among evaluations meeting every floor; at equal scores the
    last step's weights are kept, an earlier step's only when strictly better. ``path`` keeps the
    best weights so far, so a resumed run chooses as a straight one."""

    def __init__(self, names, path: Path):
        self.names, self.path = set(names), path
        self.best = {"score": -1.0, "step": None}
        self.final = None                    # (score, name, weights) at the last step

    def restore(self) -> None:
        if self.path.exists():
            self.best = {k: v for k, v in torch.load(self.path, map_location="cpu").items() if k != "model"}

    def offer(self, name: str, net, score: float, eligible: bool, step: int, last: bool) -> None:
        if name not in self.names or not eligible:
            return
        if last and (self.final is None or score > self.final[0]):
            self.final = (score, name, {k: v.clone() for k, v in net.state_dict().items()})
        if score > self.best["score"]:
            self.best = {"score": score, "step": step, "weights": name}
            torch.save({"model": net.state_dict(), **self.best}, self.path)

    def choose(self, steps: int, device) -> tuple[dict | None, int, str]:
        """(weights, step, name); weights None: nothing qualified, keep the raw weights of the last step."""
        final_score = self.final[0] if self.final else -1.0
        if self.best["step"] not in (None, steps) and self.path.exists() and self.best["score"] > final_score:
            saved = torch.load(self.path, map_location=device)
            return saved["model"], self.best["step"], saved.get("weights", "raw")
        if self.final:
            return self.final[2], steps, self.final[1]
        return None, steps, "raw"


def build_model(cfg: TrainConfig):
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=VOCAB_SIZE, n_positions=BLOCK_LEN, n_embd=cfg.d_model, n_layer=cfg.n_layer,
        n_head=cfg.n_head, n_inner=4 * cfg.d_model, activation_function="gelu_new",
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, tie_word_embeddings=True,
        bos_token_id=0, eos_token_id=0,
    )
    config._attn_implementation = "sdpa"   # fast for training; analysis switches to eager
    torch.manual_seed(cfg.seed)
    return GPT2LMHeadModel(config)


def optimizer_for(model, cfg: TrainConfig) -> torch.optim.Optimizer:
    # Decay matrices only: biases, layer-norm gains and the (tied) embeddings stay free.
    decay = [p for n, p in model.named_parameters() if p.dim() == 2 and "wte" not in n and "wpe" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.dim() == 2 and "wte" not in n and "wpe" not in n)]
    return torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                              {"params": rest, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.98))


def lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


def train_step(model, opt: torch.optim.Optimizer, ids: torch.Tensor, labels: torch.Tensor, lr: float,
               clip: float) -> torch.Tensor:
    """One optimizer step on a batch (``ids``, ``labels``: ``[batch, pos]``) at learning rate ``lr``,
    gradients clipped to norm ``clip``; returns the batch's loss (a scalar tensor)."""
    for g in opt.param_groups:
        g["lr"] = lr
    model.train()
    loss = model(input_ids=ids, labels=labels).loss
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    opt.step()
    return loss


@torch.enable_grad()
def train(cfg: TrainConfig, out: Path, resume: bool = False, eval_every: int = 1500,
          ckpt_every: int = 1000, device=None, stop_after: int | None = None) -> Path | None:
    """Train (or resume) into ``out``. ``stop_after``: checkpoint after that step and return
    None, as if interrupted (``resume=True`` continues from there)."""
    recipe(cfg.recipe)   # an unknown recipe fails before any work
    torch.set_num_threads(cfg.threads)
    device = default_device(device)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(seed=cfg.seed if cfg.tokenizer_seed < 0 else cfg.tokenizer_seed)
    names = single_token_names(tokenizer)
    model = build_model(cfg).to(device)
    opt = optimizer_for(model, cfg)
    shadows = {d: copy.deepcopy(model).requires_grad_(False) for d in ema_decay_list(cfg)}
    ckpt, log_path = out / "checkpoint.pt", out / "training_log.jsonl"
    # With averages, only they may ship; the raw weights are chosen by the same rule into OUT/raw,
    # for a comparison on the same trajectory.
    selections = {"shipped": Selection([f"ema{d}" for d in shadows] or ["raw"], out / "best.pt")}
    if shadows:
        selections["raw"] = Selection(["raw"], out / "best_raw.pt")
    start = 0
    if resume and ckpt.exists():
        state = torch.load(ckpt, map_location=device)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        for d, shadow in shadows.items():
            if str(d) not in state.get("ema", {}):
                raise ValueError(f"{ckpt} holds no average with decay {d}: resume with the --ema-decays the run started with")
            shadow.load_state_dict(state["ema"][str(d)])
        start = state["step"]
        for sel in selections.values():
            sel.restore()
    else:
        log_path.unlink(missing_ok=True)
        for sel in selections.values():
            sel.path.unlink(missing_ok=True)

    def log(record):
        with log_path.open("a") as f:
            f.write(json.dumps(record) + "\n")

    chunk_id, chunk = None, None
    t0, tokens = time.time(), 0
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, desc="training", mininterval=5)
    for step in bar:
        if step // CHUNK_STEPS != chunk_id:
            chunk_id = step // CHUNK_STEPS
            chunk = training_chunk(tokenizer, names, cfg.seed, chunk_id, CHUNK_STEPS * cfg.batch, cfg.recipe)
        row = (step % CHUNK_STEPS) * cfg.batch
        ids, labels = (t[row:row + cfg.batch].to(device) for t in chunk)
        loss = train_step(model, opt, ids, labels, lr_at(step, cfg), cfg.clip)
        update_averages(shadows, model)
        tokens += int((labels != -100).sum())
        if step % 100 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}", tok_s=f"{tokens / (time.time() - t0):.0f}")
            log({"step": step, "loss": loss.item(), "lr": lr_at(step, cfg)})
        done = step + 1
        if eval_every and (done % eval_every == 0 or done == cfg.steps):
            for name, net in [("raw", model)] + [(f"ema{d}", sh) for d, sh in shadows.items()]:
                net.set_attn_implementation("eager")   # attention weights for the head scores
                rep = evaluate(net, tokenizer, quick=done != cfg.steps, split="validation")
                net.set_attn_implementation("sdpa")
                tag = {"weights": name} if shadows else {}    # logs without averages keep their format
                log({"step": done, "tokens_seen": done * cfg.batch * BLOCK_LEN, **tag, **rep.figures, **rep.heads})
                tqdm.write(f"step {done}{' ' + name if shadows else ''}: "
                           + ", ".join(f"{k}={v:.3f}" for k, v in rep.figures.items()))
                score, eligible = selection_score(rep), all(rep.meets(k) for k in TARGETS)
                for sel in selections.values():
                    sel.offer(name, net, score, eligible, done, done == cfg.steps)
        if (ckpt_every and done % ckpt_every == 0 and done != cfg.steps) or done == stop_after:
            torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": done,
                        "ema": {str(d): sh.state_dict() for d, sh in shadows.items()}}, ckpt)
        if done == stop_after:
            return None

    if "raw" in selections:
        weights, raw_step, _ = selections["raw"].choose(cfg.steps, device)
        raw = copy.deepcopy(model)
        if weights is not None:
            raw.load_state_dict(weights)
        raw.set_attn_implementation("eager")
        raw.save_pretrained(out / "raw", safe_serialization=True)
        tokenizer.save_pretrained(out / "raw")
    weights, selected, selected_weights = selections["shipped"].choose(cfg.steps, device)
    if weights is not None:
        model.load_state_dict(weights)
    tqdm.write(f"shipping the {selected_weights} weights of step {selected}")
    model.set_attn_implementation("eager")
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    elapsed = time.time() - t0
    (out / "training_config.json").write_text(json.dumps(
        {**asdict(cfg), "device": str(device), "wall_seconds": round(elapsed, 1),
         "tokens_per_second": round(tokens / max(elapsed, 1e-9)), "selected_step": selected,
         "selected_weights": selected_weights,
         **({"raw_selected_step": raw_step} if shadows else {}),
         "selected_by": SELECTION, "eval_every": eval_every}, indent=2))
    ckpt.unlink(missing_ok=True)
    for sel in selections.values():
        sel.path.unlink(missing_ok=True)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Train the course GPT-2 from a seed.")
    ap.add_argument("--out", type=Path, required=True, help="directory for the model (HF format)")
    ap.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    ap.add_argument("--eval-every", type=int, default=1500, help="steps between evaluations (0: never)")
    ap.add_argument("--ckpt-every", type=int, default=1000, help="steps between checkpoints (0: never)")
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    ap.add_argument("--stop-after", type=int, default=None, help="checkpoint and stop after this step")
    for f, default in asdict(TrainConfig()).items():
        ap.add_argument("--" + f.replace("_", "-"), type=type(default), default=default)
    args = vars(ap.parse_args(argv))
    cfg = TrainConfig(**{f: args[f] for f in asdict(TrainConfig())})
    train(cfg, args["out"], args["resume"], args["eval_every"], args["ckpt_every"], args["device"], args["stop_after"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
