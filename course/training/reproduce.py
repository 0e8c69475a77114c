"""Check that a model's training command gives back its weights bit for bit.

    python -m course.training.reproduce                    # the shipped course model
    python -m course.training.reproduce DIR --work W       # any finished run; W: where the rerun trains
    python -m course.training.reproduce --record           # also write reproduction.json beside the model

The rerun reads ``DIR/training_config.json`` and trains the same :class:`TrainConfig` from its
seed, on the CPU with the recorded thread count and evaluation interval (the interval decides
which checkpoints compete, so it decides which weights ship). It checkpoints every 1,000 steps,
and a second call with the same ``--work`` continues where an interrupted one stopped. Then the
SHA-256 of each file in :data:`COMPARED` is compared with the model's. Exit status: 0 when every
file is identical, 1 when one differs.

``--record`` writes the outcome to ``DIR/reproduction.json``; the model card quotes it while the
weights it names are still the model's (a newly shipped model needs its own check).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
import tempfile
import time
from dataclasses import asdict, fields
from datetime import date
from pathlib import Path

import torch

from course.models.loading import BUNDLED
from course.training.train import TrainConfig, train

# The files that carry what was learned: the weights and the vocabulary the tokenizer learned.
COMPARED = ("model.safetensors", "tokenizer.json")
RECORD = "reproduction.json"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def recorded_config(model_dir: Path) -> tuple[TrainConfig, int]:
    """The :class:`TrainConfig` and evaluation interval ``model_dir`` was trained with.

    Options added after a run keep their defaults, which are the behaviour it was trained with.
    """
    path = Path(model_dir) / "training_config.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: point at the --out directory of a finished "
                                "python -m course.training.train run (or the shipped course/assets/course-gpt2)")
    saved = json.loads(path.read_text())
    if saved.get("device", "cpu") != "cpu":
        raise ValueError(f"{model_dir} was trained on {saved['device']}; bit-for-bit reproduction is promised "
                         "for CPU runs only (GPU kernels may sum in a different order)")
    known = {f.name for f in fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in saved.items() if k in known}), int(saved.get("eval_every", 1500))


def reproduce(model_dir: Path, work: Path, record: bool = False) -> dict:
    """Retrain ``model_dir``'s recipe into ``work`` and compare; returns the outcome (also written
    to ``model_dir/reproduction.json`` when ``record``)."""
    model_dir, work = Path(model_dir), Path(work)
    cfg, eval_every = recorded_config(model_dir)
    missing = [f for f in COMPARED if not (model_dir / f).exists()]
    if missing:
        raise FileNotFoundError(f"{model_dir} lacks {', '.join(missing)}: nothing to compare the rerun with")
    t0 = time.time()
    train(cfg, work, resume=(work / "checkpoint.pt").exists(), eval_every=eval_every, ckpt_every=1000, device="cpu")
    files = {f: {"model": sha256(model_dir / f), "rerun": sha256(work / f)} for f in COMPARED}
    outcome = {
        "identical": all(d["model"] == d["rerun"] for d in files.values()),
        "sha256": files,
        "config": asdict(cfg), "eval_every": eval_every,
        "checked": date.today().isoformat(),
        "rerun_wall_seconds": round(time.time() - t0, 1),
        "machine": f"{platform.machine()}, {platform.system()}, Python {platform.python_version()}, "
                   f"torch {torch.__version__}",
    }
    if record:
        (model_dir / RECORD).write_text(json.dumps(outcome, indent=2) + "\n")
    return outcome


def current_record(model_dir: Path) -> dict | None:
    """``model_dir``'s reproduction record if it names the files the directory holds now, else None."""
    path = Path(model_dir) / RECORD
    if not path.exists():
        return None
    saved = json.loads(path.read_text())
    if any(sha256(Path(model_dir) / f) != saved["sha256"][f]["model"] for f in COMPARED):
        return None
    return saved


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path, nargs="?", default=BUNDLED["course-gpt2"],
                    help="a finished training run's directory (default: the shipped course model)")
    ap.add_argument("--work", type=Path, default=None,
                    help="where the rerun trains (default: a temporary directory, removed afterwards)")
    ap.add_argument("--record", action="store_true", help=f"write the outcome to MODEL/{RECORD}")
    args = ap.parse_args(argv)
    try:
        if args.work is None:
            with tempfile.TemporaryDirectory() as tmp:
                outcome = reproduce(args.model, Path(tmp) / "rerun", args.record)
        else:
            outcome = reproduce(args.model, args.work, args.record)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for f, d in outcome["sha256"].items():
        same = "identical" if d["model"] == d["rerun"] else "DIFFERENT"
        print(f"{f}: {same}\n  model {d['model']}\n  rerun {d['rerun']}")
    print(f"rerun: {outcome['rerun_wall_seconds']:.0f} s on {outcome['machine']}")
    print("reproduced bit for bit" if outcome["identical"] else "NOT reproduced: the rerun's files differ")
    return 0 if outcome["identical"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
