"""How much the lens costs over a plain Hugging Face forward pass.

    python benchmarks/lens_overhead.py [--model course-gpt2|gpt2-small-random|PATH] [--repeats 30]

In one process, with the variants interleaved round by round, it times the median of
``--repeats`` runs of: a plain HF eager forward; ``run_with_cache`` of the usual set
(residual stream at every layer, patterns, per-head z, MLP post); caching every hook
point; patching one head. Printed as milliseconds and ratios to the plain forward,
on a batch of 16 x 128 tokens and on 1 x 8. Targets: caching everything <= 1.15x at
16 x 128 and <= 1.2x at 1 x 8.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from course.lens import HookedGPT2
from course.models.loading import load_hf_model

USUAL = ("hook_resid_pre", "hook_resid_post", "hook_pattern", "hook_z", "mlp.hook_post")


def build(model_name: str, device: str):
    if model_name == "gpt2-small-random":   # GPT-2 small's shape, random weights: no download needed
        from transformers import GPT2Config, GPT2LMHeadModel

        from course.models.loading import ASSETS
        from course.models.tokenizer import load_tokenizer
        torch.manual_seed(0)
        cfg = GPT2Config()
        cfg._attn_implementation = "eager"
        make = lambda: GPT2LMHeadModel(cfg).eval().to(device)   # noqa: E731
        tok = load_tokenizer(ASSETS / "course-gpt2")
        plain, lensed = make(), make()
        lensed.load_state_dict(plain.state_dict())
    else:
        plain, tok = load_hf_model(model_name, device)
        lensed, _ = load_hf_model(model_name, device)
    return plain, HookedGPT2(lensed, tok, name=model_name)


def timed(fn, sync) -> float:
    sync()
    t = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="course-gpt2")
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    plain, lens = build(args.model, args.device)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    usual = lambda n: n.endswith(USUAL)   # noqa: E731

    def zero_head(z, hook):
        z[:, :, 0] = 0
        return z

    print(f"model {args.model} ({lens.cfg.n_layers} layers, d_model {lens.cfg.d_model}), device {args.device}, "
          f"threads {torch.get_num_threads()}, median of {args.repeats}")
    print(f"{'shape':>9s}  {'variant':18s} {'ms':>9s}  ratio")
    for batch, pos in [(16, min(128, lens.cfg.n_ctx)), (1, 8)]:
        ids = torch.randint(1, lens.cfg.d_vocab, (batch, pos), device=args.device)
        variants = {
            "plain HF forward": lambda: plain(ids, use_cache=False).logits,
            "cache usual set": lambda: lens.run_with_cache(ids, names_filter=usual),
            "cache everything": lambda: lens.run_with_cache(ids),   # every point (per-head result: on request)
            "patch one head": lambda: lens.run_with_hooks(ids, fwd_hooks=[("blocks.0.attn.hook_z", zero_head)]),
        }
        times = {k: [] for k in variants}
        with torch.no_grad():
            for fn in variants.values():      # warm-up
                fn()
            for _ in range(args.repeats):
                for k, fn in variants.items():
                    times[k].append(timed(fn, sync))
        base = statistics.median(times["plain HF forward"])
        for k, ts in times.items():
            med = statistics.median(ts)
            print(f"{batch:>3d} x {pos:<3d}  {k:18s} {med * 1e3:9.3f}  {med / base:5.2f}x")


if __name__ == "__main__":
    main()
