"""Train the course's transcoders, one per MLP layer, and save them with their metrics and card.

    python -m course.training.transcoders                 # course/assets/course-transcoders
    python -m course.training.transcoders --tokens 50000 --out /tmp/tcs --seed 1

Deterministic for a seed on CPU with one thread (a few minutes for all four layers).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from course.attribution.transcoders import RECIPE, RETRAIN, SHIPPED, dead_share, evaluate_transcoders, train_transcoders


LONG_WINDOW_ROWS = 1024   # rows of 64 held-out tokens: the card's second dead-share window


def write_card(path: Path, recipe: dict, metrics: dict, fingerprint: str, seconds: float,
               dead_long: list[float]) -> None:
    rows = "\n".join(f"| {m.layer} | {m.fvu:.3f} | {m.l0:.1f} | {m.dead:.1%} | {d:.1%} | {m.alone_loss:.3f} |"
                     for m, d in zip(metrics["layers"], dead_long))
    sparsity = {"topk": f"k = {recipe['k']}", "relu": f"L1 coefficient {recipe.get('l1_coeff', 0.0)}",
                "jumprelu": f"an L0 penalty whose coefficient is steered to L0 = {recipe['k']}, "
                            "thresholds learned through a rectangle-kernel pseudo-derivative"}[recipe["activation"]]
    arch_note = ("; architecture \"topk_transcoder\", which SAE Lens 6.54 lacks: call "
                 "`course.saes.register_with_sae_lens()` before `sae_lens.SAE.load_from_disk`"
                 if recipe["activation"] == "topk" else "")
    centring = ("; the input centred on its mean while training (folded into `b_enc` when saved, so the "
                "saved form is plain SAE Lens): without it, features aligned with the normalised stream's shared "
                "direction fire on most tokens and crowd the others out" if recipe.get("center_input") else "")
    text = f"""# The course transcoders

One transcoder per MLP layer of the course GPT-2, for chapter 7. Transcoder `l` reads
`blocks.l.ln2.hook_normalized` (the MLP's input before ln_2's weight and bias) and predicts
`blocks.l.hook_mlp_out`. Format: chapter 5's (SAE Lens `cfg.json` + `sae_weights.safetensors`), one
folder per layer{arch_note}.

- **Trained on** model weights with fingerprint `{fingerprint}` (`course.saes.model_fingerprint`);
  `load_shipped_transcoders(model, strict=True)` and the tests fail if the model changed.
- **Recipe**: {recipe['d_sae']} features, {recipe['activation']} ({sparsity}), {recipe['tokens']:,} tokens
  of corpus text per layer, batches of {recipe['batch_size']}, Adam at lr {recipe['lr']}, seed {recipe['seed']} + layer{centring};
  {seconds:.0f} s on one CPU thread.
- **Why this activation**: `python benchmarks/transcoders.py` trains TopK, ReLU (L1) and JumpReLU
  transcoders with this budget and compares them on held-out text and on chapter 7's addition graph
  (error share, whether the graph predicts the sign of real interventions); the shipped kind is the
  one whose graphs predicted interventions best there.

Measured on 4,096 held-out corpus tokens (`course.saes.metrics.evaluation_tokens`, a seed the training
stream never uses); *dead*: the share of features active on none of them, and on none of
{LONG_WINDOW_ROWS * 64:,} held-out tokens (the same text, longer): a feature that fires once in ten
thousand tokens looks dead in the short window. Both windows are far shorter than the millions of
tokens the field's dead counts use, so both shares overstate the truly dead.

| layer | fraction of variance unexplained | L0 | dead (4,096 tokens) | dead ({LONG_WINDOW_ROWS * 64:,} tokens) | loss, this MLP replaced |
| --- | --- | --- | --- | --- | --- |
{rows}

Loss on held-out corpus text: clean {metrics['clean_loss']:.3f}; every MLP replaced by its transcoder
{metrics['replaced_loss']:.3f}; every MLP's output zeroed {metrics['mlps_zeroed_loss']:.3f}.

Reproduce: `{RETRAIN}`.
"""
    (path / "TRANSCODERS_CARD.md").write_text(text)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Train one transcoder per MLP layer of the course model.")
    ap.add_argument("--d-sae", type=int, default=RECIPE["d_sae"])
    ap.add_argument("--activation", choices=["topk", "relu", "jumprelu"], default=RECIPE["activation"])
    ap.add_argument("--k", type=int, default=RECIPE["k"],
                    help="active features per token (topk); the target L0 (jumprelu)")
    ap.add_argument("--l1-coeff", type=float, default=RECIPE.get("l1_coeff", 0.0), help="sparsity penalty (relu)")
    ap.add_argument("--tokens", type=int, default=RECIPE["tokens"])
    ap.add_argument("--batch-size", type=int, default=RECIPE["batch_size"])
    ap.add_argument("--lr", type=float, default=RECIPE["lr"])
    ap.add_argument("--seed", type=int, default=RECIPE["seed"])
    ap.add_argument("--out", default=str(SHIPPED))
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    import course

    torch.set_num_threads(1)        # deterministic, and kind to a shared machine
    model = course.load_model(device="cpu")
    recipe = {**RECIPE, "d_sae": args.d_sae, "activation": args.activation, "k": args.k, "l1_coeff": args.l1_coeff, "tokens": args.tokens, "batch_size": args.batch_size,
              "lr": args.lr, "seed": args.seed}
    start = time.perf_counter()
    tcs, logs = train_transcoders(model, progress=not args.no_progress, **recipe)
    seconds = time.perf_counter() - start
    metrics = evaluate_transcoders(model, tcs)
    from course.neurons import text_stream

    dead_long = dead_share(model, tcs, text_stream(model, LONG_WINDOW_ROWS, 64, seed=987_654).tokens)
    for tc, log in zip(tcs, logs):
        tc.cfg.extra = {"training": {**recipe, "tokens_seen": log.tokens[-1], "steps": log.steps[-1],
                                     "seconds": round(log.seconds, 1), "resampled": log.resampled,
                                     **({"final_l0_coeff": log.l0_coeff[-1]} if log.l0_coeff else {})},
                        "evaluation": metrics["layers"][tc.cfg.seed - recipe["seed"]].as_dict()}
    out = Path(args.out)
    tcs.save(out)
    summary = {"recipe": recipe, "fingerprint": tcs.fingerprint, "seconds": round(seconds, 1),
               "layers": [{**m.as_dict(), f"dead_{LONG_WINDOW_ROWS * 64}_tokens": round(d, 4)}
                          for m, d in zip(metrics["layers"], dead_long)],
               **{k: round(v, 4) for k, v in metrics.items() if k != "layers"}}
    (out / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    write_card(out, recipe, metrics, tcs.fingerprint, seconds, dead_long)
    print(json.dumps(summary, indent=2))
    print(f"saved to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
