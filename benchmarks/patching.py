"""Batched activation patching of every head against a loop of single-head patches.

    python benchmarks/patching.py [--groups N] [--per-group N] [--shapes all] [--repeats R]

On IOI prompts (one sentence shape's prompts patched from their ABC counterparts: the
chapter's set-up, 8 shapes × 8 prompts, shape 0), the batched sweep
(``course.patching.patch_sweep(..., positions=end)``) and the loop a student writes
(``course.patching.patch_heads``: one forward pass per head, with a hook) give the same
layer × head map; this prints their times, measured back to back ``--repeats`` times (medians),
the median of the per-repeat speed-ups, and the settings. Target (issue 13): at least 10×.

The batched sweep is exact, so what it saves is bounded by the work an exact answer needs:
it runs the corrupted prompts once and, per layer, only what follows the patched heads (for
all of them at once), only from the first position where a clean and a corrupted head output
differ, and the last layer and the unembedding only where the metric reads. On a CPU the time
is the arithmetic, so the speed-up grows with the depth of the model and with the share of each
prompt before the first name that differs (``--shapes all`` shows it for every sentence shape).
The last figures on each line count both sides' floating-point operations: their ratio is what
an exact sweep can gain on a machine whose time is the arithmetic (a CPU); where per-pass
overhead dominates instead (a GPU, tiny batches), batching gains more.
"""

from __future__ import annotations

import argparse

import torch
from torch.utils.flop_counter import FlopCounterMode

import course
from course.data.ioi_dataset import ioi_dataset
from course.chapters.ch3_induction_ioi.findings import patching_speedup
from course.patching import logit_diff, normalized, patch_heads, patch_sweep


def _gflop(fn) -> float:
    """Floating-point operations of ``fn()`` (matrix products, as PyTorch's counter sees them), in 1e9."""
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops() / 1e9


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="course-gpt2")
    ap.add_argument("--groups", type=int, default=8, help="sentence shapes in the dataset (the chapter's: 8)")
    ap.add_argument("--per-group", type=int, default=8, help="prompts per shape (the chapter's: 8)")
    ap.add_argument("--shapes", default="0", help="'all', or comma-separated shape numbers (the chapter's: 0)")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    torch.set_grad_enabled(False)
    model = course.load_model(args.model)
    data = ioi_dataset(model, "test", n_groups=args.groups, per_group=args.per_group, seed=0)
    shapes = range(args.groups) if args.shapes == "all" else [int(g) for g in args.shapes.split(",")]
    print(f"{args.model} ({model.cfg.n_layers} layers x {model.cfg.n_heads} heads, d_model {model.cfg.d_model}, "
          f"vocab {model.cfg.d_vocab}) on {model.device}, torch threads {torch.get_num_threads()}; "
          f"medians of {args.repeats} back-to-back repeats")
    for g in shapes:
        rows = data.group == g
        n_pos = int(data.end_pos[rows].max()) + 1
        clean, abc = data.clean[rows, :n_pos], data.abc[rows, :n_pos]
        end, io, s = data.end_pos[rows], data.io_tok[rows], data.s_tok[rows]
        ld_clean, ld_abc = (float(logit_diff(model(t), end, io, s).mean()) for t in (clean, abc))
        _, cache = model.run_with_cache(clean, names_filter=lambda n: n.endswith("hook_z"))
        source = {l: cache["z", l] for l in range(model.cfg.n_layers)}
        first = int((clean != abc).any(0).nonzero()[0])

        def metric(logits):
            return normalized(logit_diff(logits, end, io, s).mean(), ld_clean, ld_abc)

        b = patching_speedup(model, abc, cache, metric, repeats=args.repeats, positions=end)
        flops = {name: _gflop(fn) for name, fn in (
            ("batched", lambda: patch_sweep(model, abc, cache, metric, "heads", positions=end)),
            ("loop", lambda: [patch_heads(model, abc, [(l, h)], source) for l in range(model.cfg.n_layers)
                              for h in range(model.cfg.n_heads)]))}
        print(f"sentence shape {g}: {int(rows.sum())} prompts x {n_pos} tokens (first difference at position "
              f"{first}): batched {b['batched']:.3f} s, loop {b['loop']:.3f} s, speed-up {b['speedup']:.1f}x "
              f"(per repeat {', '.join(f'{r:.1f}' for r in b['ratios'])}; maps differ by {b['max_difference']:.1e}); "
              f"arithmetic: batched {flops['batched']:.2f} GFLOP, loop {flops['loop']:.2f} GFLOP, "
              f"ratio {flops['loop'] / flops['batched']:.1f}x")


if __name__ == "__main__":
    main()
