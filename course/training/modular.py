"""Train the one-layer modular-addition model of chapter 6 (:mod:`course.models.modular` describes and loads it).

    python -m course.training.modular --out course/assets/modular-addition    # train (a few CPU minutes)
    python -m course.training.modular --evaluate [PATH]                         # train/test accuracy
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from course.models.modular import CHECKPOINTS_FILE, ModularConfig, accuracy, all_pairs, answer_logits, build_model, labels, split


@torch.enable_grad()
def train(cfg: ModularConfig, out: Path) -> dict:
    torch.set_num_threads(cfg.threads)
    model = build_model(cfg)
    device = next(model.parameters()).device
    inputs, targets = all_pairs().to(device), labels(all_pairs()).to(device)
    train_idx, test_idx = split(cfg.seed, cfg.train_fraction)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))
    log, curve, snapshots, t0 = [], [], {}, time.time()
    keep = {int(x) for x in str(cfg.checkpoints).split(",") if x.strip()}
    bar = tqdm(range(cfg.steps), desc="modular addition", mininterval=5)
    for step in bar:
        model.train()
        if step in keep:     # the weights *before* this step's update: step 0 is the initialization
            snapshots.update({f"step{step}.{k}": v.detach().to(torch.float16).clone()
                              for k, v in model.state_dict().items() if not k.endswith("attn.bias")})
        loss = F.cross_entropy(answer_logits(model, inputs[train_idx]), targets[train_idx])
        if step % cfg.loss_every == 0:
            with torch.no_grad():
                model.eval()
                test_loss = F.cross_entropy(answer_logits(model, inputs[test_idx]), targets[test_idx]).item()
                model.train()
            curve.append({"step": step, "train_loss": loss.item(), "test_loss": test_loss})
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 100 == 0:
            with torch.no_grad():
                model.eval()
                test_loss = F.cross_entropy(answer_logits(model, inputs[test_idx]), targets[test_idx]).item()
            acc = accuracy(model, cfg.seed, cfg.train_fraction)
            log.append({"step": step, "train_loss": loss.item(), "test_loss": test_loss, **acc})
            bar.set_postfix(train=f"{loss.item():.3f}", test=f"{test_loss:.3f}", test_acc=f"{acc['test_accuracy']:.3f}")
            if acc["test_accuracy"] >= cfg.stop_at_test_accuracy and acc["train_accuracy"] == 1.0:
                break
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    final = {**accuracy(model, cfg.seed, cfg.train_fraction), "steps_run": step + 1,
             "wall_seconds": round(time.time() - t0, 1)}
    (out / "training_config.json").write_text(json.dumps({**asdict(cfg), **final}, indent=2))
    (out / "training_log.json").write_text(json.dumps(log))
    (out / "loss_curve.json").write_text(json.dumps(curve))
    if snapshots:
        from safetensors.torch import save_file

        steps = sorted({int(k.split(".")[0][4:]) for k in snapshots})
        save_file(snapshots, out / CHECKPOINTS_FILE, metadata={"steps": ",".join(map(str, steps))})
    return final


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Train or evaluate the modular-addition model.")
    ap.add_argument("--out", type=Path, help="directory to write the trained model to")
    ap.add_argument("--evaluate", nargs="?", const="modular-addition", metavar="PATH",
                    help="print train/test accuracy of a saved model (default: the bundled one)")
    for f, default in asdict(ModularConfig()).items():
        ap.add_argument("--" + f.replace("_", "-"), type=type(default), default=default)
    args = vars(ap.parse_args(argv))
    cfg = ModularConfig(**{f: args[f] for f in asdict(ModularConfig())})
    if args["evaluate"]:
        from course.models.loading import load_hf_model

        model, _ = load_hf_model(args["evaluate"], device="cpu")
        print(json.dumps(accuracy(model, cfg.seed, cfg.train_fraction), indent=2))
        return 0
    if not args["out"]:
        ap.error("give --out DIR to train, or --evaluate [PATH]")
    print(json.dumps(train(cfg, args["out"]), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
