"""Train the course GPT-2 from a seed.

    python -m course.models.train --out course/assets/course-gpt2            # the shipped model
    python -m course.models.train --out /tmp/run --resume                     # continue a run
    python -m course.models.train --out /tmp/smoke --steps 20 --eval-every 0  # a smoke test
    python -m course.models.train --out /tmp/s2 --seed 2 --tokenizer-seed 1   # another seed, same vocabulary
    python -m course.models.train --out /tmp/e1 --ema-decays 0.999,0.9998      # ship a running average
    python -m course.models.train --out /tmp/r2 --seed 2 --recipe recipient    # another corpus recipe
    python -m course.models.train --out /tmp/g2 --select-by name-groups       # choose on every name group too
    python -m course.models.train --out /tmp/n2 --name-stats shared          # kept-out names share IOI names' statistics
    python -m course.models.train --out /tmp/n3 --name-stats codes           # every name a fixed random code
    python -m course.models.train --out /tmp/n4 --name-stats codes --name-code-dim 32   # ... in a 32-dim subspace

Same seed and arguments, same weights (on the same hardware and thread count). It
trains the tokenizer, streams the synthetic corpus (course.data.corpus), logs the
loss and the course's phenomena (course.models.evaluate) at checkpoints, and can
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
from course.data.splits import ioi_split
from course.models.evaluate import NAME_GROUPS, TARGETS, evaluate, ioi_by_name_group
from course.models.loading import default_device
from course.models.name_statistics import apply_codes, check_name_stats, name_codes, name_token_ids, share_statistics
from course.models.tokenizer import VOCAB_SIZE, single_token_names, train_tokenizer

CHUNK_STEPS = 100   # the data stream is generated 100 steps at a time, each chunk from its own seed
# Checkpoint selection, on validation data only (course.models.evaluate.SPLIT_DATA): among
# evaluations where every floor is met on validation data, keep the one whose weakest
# held-out ability is strongest. The test families, phrasing and sums decide nothing.
SELECTION = "min(ioi_accuracy, ioi_accuracy_unseen_names, fact_accuracy, addition_accuracy) on validation data"
# ``--select-by name-groups`` adds IOI accuracy in each name group (course.models.evaluate.NAME_GROUPS:
# IO and/or S kept out of IOI) to the minimum. The floors alone sit at 1.000 for most runs' late
# checkpoints; a group with only S kept out can still be at 0.6 there (runs v12, recipe_attempts.md).
SELECT_BY = {"floors": SELECTION,
             "name-groups": SELECTION.replace(") on", ", IOI accuracy of every name group) on")}
# The name groups' figures, in the training log: ioi_accuracy_both_kept_out, ..., ioi_accuracy_neither.
GROUP_FIGURES = {g: "ioi_accuracy_" + g.replace(" ", "_") for g in NAME_GROUPS}


def selection_score(rep) -> float:
    f = rep.figures
    groups = [f[k] for k in GROUP_FIGURES.values() if k in f]
    return min(f["ioi_accuracy"], f["ioi_accuracy_unseen_names"], f["fact_accuracy"], f["addition_accuracy"], *groups)


def add_name_groups(rep, model, tokenizer, quick: bool) -> None:
    """Put IOI accuracy in each name group, on the validation families, into ``rep.figures``."""
    for group, (acc, _) in ioi_by_name_group(model, tokenizer, "validation", n=100 if quick else 400, seed=1000).items():
        rep.figures[GROUP_FIGURES[group]] = acc


def check_select_by(name: str) -> None:
    if name not in SELECT_BY:
        raise ValueError(f"unknown --select-by {name!r}: choose one of {', '.join(SELECT_BY)}")


@dataclass
class TrainConfig:
    seed: int = 0
    steps: int = 30_000
    batch: int = 8
    lr: float = 2e-3
    warmup: int = 200
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.1
    clip: float = 1.0
    n_layer: int = 4
    n_head: int = 8
    d_model: int = 128
    threads: int = 1
    # The tokenizer's seed (-1: the model's). Fixing it while the seed varies keeps the vocabulary,
    # and with it the names kept out of IOI, the same across a seed study.
    tokenizer_seed: int = -1
    # Comma-separated decays of exponential moving averages of the weights ("" for none). Each
    # average is a shadow model: training never reads it, so the raw trajectory is the one the
    # same seed gives without averages. The raw weights are still evaluated and logged, but with
    # averages the shipped weights are chosen among the averages only.
    ema_decays: str = ""
    # The corpus recipe (course.data.corpus.RECIPES); "base" is the shipped model's stream.
    recipe: str = "base"
    # How the shipped checkpoint is chosen on validation data (SELECT_BY); "floors" is the shipped model's.
    select_by: str = "floors"
    # "shared": the names kept out of IOI keep the IOI names' embedding mean and spread; "codes":
    # every name's row is a fixed random code around a shared learned mean and scale
    # (course.models.name_statistics); "free" is the shipped model's.
    name_stats: str = "free"
    # With name_stats "codes": the dimension of the subspace the codes lie in (0: the whole width).
    name_code_dim: int = 0


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


def name_stats_sharer(cfg: TrainConfig, tokenizer, names):
    """A function of a model that applies ``cfg.name_stats`` to its (tied) token embeddings."""
    if cfg.name_stats == "free":
        return lambda model: None
    split = ioi_split(names)
    ioi_ids, kept_ids = name_token_ids(tokenizer, split.ioi_names), name_token_ids(tokenizer, split.unseen_names)
    if cfg.name_stats == "codes":
        ids = ioi_ids + kept_ids
        # Its own generator, so the codes leave the weights' initialization and data order as they are.
        codes = name_codes(len(ids), cfg.d_model, seed=cfg.seed, dim=cfg.name_code_dim)
        return lambda model: apply_codes(model.transformer.wte.weight, ids, codes)
    return lambda model: share_statistics(model.transformer.wte.weight, ioi_ids, kept_ids)


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


@torch.enable_grad()
def train(cfg: TrainConfig, out: Path, resume: bool = False, eval_every: int = 1500,
          ckpt_every: int = 1000, device=None, stop_after: int | None = None) -> Path | None:
    """Train (or resume) into ``out``. ``stop_after``: checkpoint after that step and return
    None, as if interrupted (``resume=True`` continues from there)."""
    recipe(cfg.recipe)   # an unknown recipe or selection fails before any work
    check_select_by(cfg.select_by)
    check_name_stats(cfg.name_stats, cfg.name_code_dim, cfg.d_model)
    torch.set_num_threads(cfg.threads)
    device = default_device(device)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(seed=cfg.seed if cfg.tokenizer_seed < 0 else cfg.tokenizer_seed)
    names = single_token_names(tokenizer)
    model = build_model(cfg).to(device)
    share_name_stats = name_stats_sharer(cfg, tokenizer, names)
    share_name_stats(model)
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
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg)
        model.train()
        loss = model(input_ids=ids, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
        opt.step()
        share_name_stats(model)
        update_averages(shadows, model)
        for shadow in shadows.values():   # the average of shared rows keeps their mean, not their spread
            share_name_stats(shadow)
        tokens += int((labels != -100).sum())
        if step % 100 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}", tok_s=f"{tokens / (time.time() - t0):.0f}")
            log({"step": step, "loss": loss.item(), "lr": lr_at(step, cfg)})
        done = step + 1
        if eval_every and (done % eval_every == 0 or done == cfg.steps):
            for name, net in [("raw", model)] + [(f"ema{d}", sh) for d, sh in shadows.items()]:
                net.set_attn_implementation("eager")   # attention weights for the head scores
                rep = evaluate(net, tokenizer, quick=done != cfg.steps, split="validation")
                if cfg.select_by == "name-groups":
                    add_name_groups(rep, net, tokenizer, quick=done != cfg.steps)
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
         "selected_by": SELECT_BY[cfg.select_by], "eval_every": eval_every}, indent=2))
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
