"""Which activation the shipped transcoders use: TopK, ReLU (L1) and JumpReLU trained with the same
budget, compared on what chapter 7 needs from them.

    python benchmarks/transcoders.py [--tokens N] [--l1-coeff C]

Each kind is trained on every MLP layer with the shipped recipe (``course.attribution.transcoders.RECIPE``:
features, tokens, batch, learning rate, seed; ``k`` is TopK's k and JumpReLU's target L0), then
measured on held-out corpus text (FVU, L0 and dead share per layer, the model's loss with every MLP
replaced) and on the addition graph of chapter 7 ("calc: 36 + 59 ="): active features, the error
nodes' share of the influence, how often the graph's predicted effect of removing a top-10 feature
has the sign of the real model's, and the suppression of the operand feature the chapter validates.
"""

from __future__ import annotations

import argparse
import time

import torch

import course
from course.attribution.transcoders import RECIPE, evaluate_transcoders, train_transcoders
from course.chapters.ch7_attribution_graphs.findings import addition_graph, suppression_agreement, top_features, validate_by_suppression


def measure(model, tcs) -> dict:
    metrics = evaluate_transcoders(model, tcs)
    found = addition_graph(model, tcs)
    agree = suppression_agreement(model, found, validate_by_suppression(model, found, top_features(found, 10)))
    op = agree["operand"]
    return {"fvu": [m.fvu for m in metrics["layers"]], "l0": [m.l0 for m in metrics["layers"]],
            "dead": [m.dead for m in metrics["layers"]], "replaced_loss": metrics["replaced_loss"],
            "clean_loss": metrics["clean_loss"], "features": found["stats"]["features"],
            "error_share": found["error_share"], "sign_agreement": agree["sign_agreement"],
            "operand": f"{op['feature']}: predicted {op['predicted_total']:+.2f}, real {op['actual']:+.2f}, "
                       f"answer {op['top_after']!r}"}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=RECIPE["tokens"])
    ap.add_argument("--l1-coeff", type=float, default=0.05, help="ReLU's L1 coefficient")
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    model = course.load_model(device="cpu")
    # ReLU's dead features are resampled every resample_every steps (not given AuxK): resampling every
    # 4,096 tokens would churn them, so it keeps the 40-batch window of 2,048 it was tuned with.
    kinds = {"topk": {}, "relu": {"l1_coeff": args.l1_coeff, "resample_every": 40 * 2048 // RECIPE["batch_size"]},
             "jumprelu": {}}
    rows = {}
    for kind, extra in kinds.items():
        t = time.perf_counter()
        tcs, _ = train_transcoders(model, progress=False, **{**RECIPE, "tokens": args.tokens, "activation": kind,
                                                            **extra})
        rows[kind] = measure(model, tcs)
        print(f"{kind}: trained in {time.perf_counter() - t:.0f} s", flush=True)
    fmt = lambda xs, f: " / ".join(f.format(x) for x in xs)  # noqa: E731
    print(f"\n{'':24}" + "".join(f"{k:>34}" for k in rows))
    lines = [("FVU per layer", lambda r: fmt(r["fvu"], "{:.3f}")), ("L0 per layer", lambda r: fmt(r["l0"], "{:.1f}")),
             ("dead per layer", lambda r: fmt(r["dead"], "{:.0%}")),
             ("loss, every MLP replaced", lambda r: f"{r['replaced_loss']:.3f} (clean {r['clean_loss']:.3f})"),
             ("36+59 active features", lambda r: str(r["features"])),
             ("36+59 error share", lambda r: f"{r['error_share']:.2f}"),
             ("sign agreement, top 10", lambda r: f"{r['sign_agreement']:.0%}")]
    for name, cell in lines:
        print(f"{name:24}" + "".join(f"{cell(r):>34}" for r in rows.values()))
    for kind, r in rows.items():
        print(f"operand suppression, {kind}: {r['operand']}")


if __name__ == "__main__":
    main()
