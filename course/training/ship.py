"""Make a newly trained model the course model, and rebuild everything trained or computed on it.

    python -m course.training.ship DIR              # DIR: the --out of course.training.train
    python -m course.training.ship DIR --dry-run    # print the steps, change nothing

The course's other artifacts are trained on the course model or computed from it, so a new
model means, in order: its files into ``course/assets/course-gpt2``; its card (which
evaluates it on the held-out data); the chapter-5 SAE and the chapter-7 transcoders,
retrained from their recipes' seeds; the chapters' checks' expected values
(``python -m course.build``). Each step runs as its own process, one CPU thread, and is
timed. Then run the tests (``make test``): what they assert about the model's properties
may need a look, and the README quotes the card's figures.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from course.models.loading import BUNDLED
from course.training.reproduce import RECORD

# What course.training.train writes that the course ships (checkpoints and the best-step file
# are deleted by a finished run; the card and evaluation are written here, not copied).
MODEL_FILES = ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
               "tokenizer_config.json", "training_config.json", "training_log.jsonl")

STEPS = (
    ("model card and evaluation", ["-m", "course.training.card", "{assets}"]),
    ("chapter 5's SAE", ["-m", "course.training.sae"]),
    ("chapter 7's transcoders", ["-m", "course.training.transcoders", "--no-progress"]),
    ("chapters' expected values", ["-m", "course.build"]),
)


class NotATrainedModel(ValueError):
    """Raised when the directory lacks a file a finished training run writes."""


def check_trained(run: Path) -> None:
    missing = [f for f in MODEL_FILES if not (run / f).exists()]
    if missing:
        hint = (" It holds a checkpoint: the run did not finish; continue it with "
                f"python -m course.training.train --out {run} --resume (and the run's other arguments)."
                if (run / "checkpoint.pt").exists() else "")
        raise NotATrainedModel(f"{run} is not a finished training run: {', '.join(missing)} missing.{hint}")


def ship(run: Path, assets: Path = BUNDLED["course-gpt2"], dry_run: bool = False, python: str = sys.executable) -> list[str]:
    """Copy ``run``'s model into ``assets`` and run :data:`STEPS`; returns the steps as printed."""
    run, assets = Path(run), Path(assets)
    check_trained(run)
    done = [f"copy {', '.join(MODEL_FILES)} from {run} to {assets}"]
    if not dry_run:
        assets.mkdir(parents=True, exist_ok=True)
        for f in MODEL_FILES:
            shutil.copy2(run / f, assets / f)
        # a reproduction record belongs to the weights it was made for
        if (run / RECORD).exists():
            shutil.copy2(run / RECORD, assets / RECORD)
        else:
            (assets / RECORD).unlink(missing_ok=True)
    print(done[0], flush=True)
    env = {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    for what, args in STEPS:
        cmd = [python, *(a.format(assets=assets) for a in args)]
        line = f"{what}: {' '.join(cmd[1:])}"
        done.append(line)
        print(line, flush=True)
        if dry_run:
            continue
        t0 = time.time()
        subprocess.run(cmd, check=True, env={**os.environ, **env})
        print(f"  {time.time() - t0:.0f} s", flush=True)
    return done


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="the --out directory of a finished course.training.train run")
    ap.add_argument("--dry-run", action="store_true", help="print the steps; change nothing")
    args = ap.parse_args(argv)
    try:
        ship(args.run, dry_run=args.dry_run)
    except NotATrainedModel as e:
        print(e, file=sys.stderr)
        return 2
    if not args.dry_run:
        print("Now run the tests (make test) and update the README's figures from the card.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
