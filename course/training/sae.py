"""Train chapter 5's shipped SAE on the course model, from its recipe (``course.saes.train.RECIPE``).

    python -m course.training.sae                       # reproduces the shipped SAE (course/assets/course-sae)
    python -m course.training.sae --tokens 200000 --out /tmp/sae --seed 1
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from course.saes.train import RECIPE, SHIPPED, train_sae


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Train an SAE on the course model (defaults: the shipped SAE's recipe).")
    ap.add_argument("--hook", default=RECIPE["hook_name"])
    ap.add_argument("--d-sae", type=int, default=RECIPE["d_sae"])
    ap.add_argument("--activation", default=RECIPE["activation"], choices=["topk", "relu", "jumprelu"])
    ap.add_argument("--k", type=int, default=RECIPE["k"])
    ap.add_argument("--l1", type=float, default=0.0)
    ap.add_argument("--tokens", type=int, default=RECIPE["tokens"])
    ap.add_argument("--batch-size", type=int, default=RECIPE["batch_size"])
    ap.add_argument("--lr", type=float, default=RECIPE["lr"])
    ap.add_argument("--seed", type=int, default=RECIPE["seed"])
    ap.add_argument("--out", default=str(SHIPPED))
    args = ap.parse_args(argv)
    import course
    from course.saes.io import save_sae, write_card
    from course.saes.metrics import evaluate

    torch.set_num_threads(1)        # measured: one thread is fastest next to another job, and deterministic
    model = course.load_model(device="cpu")
    start = time.perf_counter()
    sae, log = train_sae(model, args.hook, args.d_sae, args.activation, args.k, args.l1, args.tokens,
                         args.batch_size, args.lr, args.seed)
    seconds = time.perf_counter() - start
    ev = evaluate(model, sae)
    sae.cfg.extra = {"training": {**vars(args), "out": None, "resample_every": RECIPE["resample_every"], "tokens_seen": log.tokens[-1], "steps": log.steps[-1],
                                  "seconds": round(seconds, 1), "resampled": log.resampled},
                     "evaluation": ev.as_dict()}
    save_sae(sae, args.out)
    (Path(args.out) / "training_log.json").write_text(json.dumps(
        {"steps": log.steps, "tokens": log.tokens, "loss": log.loss, "explained_variance": log.explained_variance,
         "l0": log.l0}) + "\n")
    write_card(sae, args.out)
    print(f"trained in {seconds:.0f} s on {log.tokens[-1]:,} tokens; {ev}\nsaved to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
