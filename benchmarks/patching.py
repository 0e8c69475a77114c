"""Batched activation patching of every head against a loop of single-head patches.

    python benchmarks/patching.py [--groups N] [--repeats R]

On IOI prompts (each sentence shape's prompts patched from their ABC counterparts), the
batched sweep (``course.patching.patch_sweep``: one forward pass per layer, the corrupted
batch repeated once per head) and the loop (``course.patching.patch_heads``: one forward
pass per head) give the same layer × head map; this prints their times and the speed-up.
Target (issue 13): at least 10×. On a CPU the work per forward pass grows with the batch,
so batching saves only the per-pass overhead; on a GPU it runs all heads in parallel.
"""

from __future__ import annotations

import argparse

import torch

import course
from course.data.ioi_dataset import ioi_dataset
from course.findings_ch3 import patching_speedup
from course.patching import logit_diff, normalized


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="course-gpt2")
    ap.add_argument("--groups", type=int, default=2)
    ap.add_argument("--per-group", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    torch.set_grad_enabled(False)
    model = course.load_model(args.model)
    data = ioi_dataset(model, "test", n_groups=args.groups, per_group=args.per_group, seed=0)
    print(f"{args.model} on {model.device}, torch threads {torch.get_num_threads()}; "
          f"{model.cfg.n_layers * model.cfg.n_heads} heads")
    for g in range(args.groups):
        rows = data.group == g
        n_pos = int(data.end_pos[rows].max()) + 1
        clean, abc = data.clean[rows, :n_pos], data.abc[rows, :n_pos]
        end, io, s = data.end_pos[rows], data.io_tok[rows], data.s_tok[rows]
        ld_clean, ld_abc = (float(logit_diff(model(t), end, io, s).mean()) for t in (clean, abc))
        _, cache = model.run_with_cache(clean, names_filter=lambda n: n.endswith("hook_z"))

        def metric(logits):
            return normalized(logit_diff(logits, end, io, s).mean(), ld_clean, ld_abc)

        b = patching_speedup(model, abc, cache, metric, repeats=args.repeats)
        print(f"sentence shape {g}: {int(rows.sum())} prompts x {n_pos} tokens: batched {b['batched']:.3f} s, "
              f"loop {b['loop']:.3f} s, speed-up {b['speedup']:.1f}x (maps differ by {b['max_difference']:.1e})")


if __name__ == "__main__":
    main()
