"""What caching costs over a plain Hugging Face forward: our lens, TransformerLens, nnsight.

    python benchmarks/lens_overhead.py [--model course-gpt2|gpt2-small-random|PATH] [--repeats 30]

In one process, on copies of the same model, with the variants interleaved round by
round, it times the median of ``--repeats`` runs (at least 20) of: a plain HF eager
forward; our ``run_with_cache`` of the usual set (residual stream at every layer,
patterns, per-head z, MLP post) and of every hook point; patching one head; and, when
the dev extra is installed, TransformerLens 3.9's ``TransformerBridge.run_with_cache``
(every hook point) and an nnsight trace saving the same activations (every block's
input, attention scores' pattern, z, attention out, MLP pre/post/out, block output,
embeddings, final norm). Printed as milliseconds and ratios to the plain forward, at
16 x 128 tokens and at 1 x 8; ``--model gpt2-small-random`` runs GPT-2 small's shape.
Targets for our lens: caching everything <= 1.1x at 16 x 128 and <= 1.2x at 1 x 8.
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


def bridge_and_nnsight(plain, tok):
    """TransformerLens's bridge and an nnsight wrapper, each on its own copy (None when not installed)."""
    import copy
    try:
        from nnsight import NNsight
        from transformer_lens.model_bridge import TransformerBridge
    except ImportError:
        return None, None
    bridge = TransformerBridge.boot_transformers("gpt2", hf_model=copy.deepcopy(plain), tokenizer=tok)
    return bridge, NNsight(copy.deepcopy(plain))


def nnsight_cache_everything(net, ids):
    """Save, in execution order, the activations our "cache everything" holds."""
    t, saved = net.transformer, []
    with net.trace(ids):
        saved += [t.wte.output.save(), t.wpe.output.save()]
        for blk in t.h:
            saved += [blk.input.save(), blk.ln_1.output.save(), blk.attn.c_attn.output.save()]
            saved += [blk.attn.c_proj.input.save(), blk.attn.output[0].save(), blk.attn.output[1].save()]
            saved += [blk.ln_2.output.save(), blk.mlp.c_fc.output.save(), blk.mlp.act.output.save()]
            saved += [blk.mlp.output.save(), blk.output.save()]
        saved += [t.ln_f.output.save(), net.lm_head.output.save()]
    return saved


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
    args.repeats = max(args.repeats, 20)
    plain, lens = build(args.model, args.device)
    bridge, net = bridge_and_nnsight(plain, lens.tokenizer)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    usual = lambda n: n.endswith(USUAL)   # noqa: E731

    def zero_head(z, hook):
        z[:, :, 0] = 0
        return z

    print(f"model {args.model} ({lens.cfg.n_layers} layers, d_model {lens.cfg.d_model}), device {args.device}, "
          f"threads {torch.get_num_threads()}, median of {args.repeats}")
    print(f"{'shape':>9s}  {'variant':22s} {'ms':>9s}  ratio")
    for batch, pos in [(16, min(128, lens.cfg.n_ctx)), (1, 8)]:
        ids = torch.randint(1, lens.cfg.d_vocab, (batch, pos), device=args.device)
        variants = {
            "plain HF forward": lambda: plain(ids, use_cache=False).logits,
            "lens: cache usual": lambda: lens.run_with_cache(ids, names_filter=usual),
            "lens: cache all": lambda: lens.run_with_cache(ids),   # every point (per-head result: on request)
            "patch one head": lambda: lens.run_with_hooks(ids, fwd_hooks=[("blocks.0.attn.hook_z", zero_head)]),
        }
        if bridge is not None:
            variants["TL bridge: cache all"] = lambda: bridge.run_with_cache(ids)
            variants["nnsight: save all"] = lambda: nnsight_cache_everything(net, ids)
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
            print(f"{batch:>3d} x {pos:<3d}  {k:22s} {med * 1e3:9.3f}  {med / base:5.2f}x")


if __name__ == "__main__":
    main()
