"""A fast proxy for the IOI circuit question of issue 38: minutes per run, not an hour.

    python -m course.training.ioi_proxy --out DIR --mix base --steps 24000 --seed 1
    python -m course.training.ioi_proxy --out DIR --mix three_named --d-model 192 --n-head 6
    python -m course.training.ioi_proxy --measure DIR            # re-measure a saved proxy

A full curriculum run (:mod:`course.training.train`) takes over an hour on one CPU thread.
The question the proxy asks — does a recipe make GPT-2 small's IOI mechanism appear (name
movers copy IO; S-inhibition heads read *repetition* at S2; duplicate-token or induction
heads mark the repeat), and does IO become the predicted next token — needs neither facts
nor addition, so the proxy trains on the IOI part of the stream only: IOI sentences,
free-form IOI sentences, stories, one-person and plain sentences, and repeated random
token sequences (without which no induction heads form). Everything it measures with is
the course's own: the shipped tokenizer (so every token id and the name split are the
course model's), the IOI grammar with its held-out families, and the circuit code
(:mod:`course.circuits.ioi`).

**What decides and what is only recorded.** A proxy decides which change is carried into a
full run, so it reads the *validation* families only: IO above S, IO the top next token, IO
the top name, and the circuit's classes named on one validation sample and measured on
another (:func:`measure`). Test-family figures are printed for the record and decide
nothing (issue 38's rule). :data:`CARRY_RULE` is the rule, fixed before the runs it judges.

Mixes (:data:`MIXES`) change one thing at a time against ``base``, the IOI-family part of
the shipped ``base`` recipe:

- ``three`` (hypothesis 1, the position shortcut): three people are introduced and *two*
  come back ("When Mary, John and Kate went to the store, Kate and John gave a drink to" →
  " Mary"). Pushing down the most recent name leaves a repeated name in the race; only
  finding the repeated names, and copying the one that is not, answers.
- ``named_endings`` (hypothesis 2, IO as a natural next token): a common-noun subject, then
  *any* ending of the grammar (the held-out test endings included), then a name, often one
  from the sentence before ("Anna liked the lamp. Then the baker cooked dinner for Anna.").
  One person only: the held-out families' two-person *structure* stays held out, their
  ending words do not (the relaxation issue 38 proposes). Final families are never used.
- ``three_named``: both. ``three_more``: a stronger dose of ``three``.
- ``three_named_among``: ``three_named`` with ``named_among`` documents, where one of two or
  three people named once is wanted and nothing says which: copying names from context, the
  name movers' job, is the best guess.

Width and heads (hypothesis 3) are flags: ``--d-model``, ``--n-head``, ``--n-layer``.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from course.data import repeats
from course.data.corpus import BLOCK_LEN, pack_blocks, text_document
from course.data.ioi_held_out import held_out_ioi_prompts
from course.data.vocabulary import single_token_names
from course.models.loading import BUNDLED
from course.training.evaluate import _first_token as first_token
from course.training.evaluate import _last_logits as last_token_logits
from course.training.evaluate import induction_measures, io_top_name_share, io_top_token_share, ioi_measures
from course.models.tokenizer import VOCAB_SIZE
from course.training.train import build_model, lr_at, optimizer_for, train_step

ASSET = BUNDLED["course-gpt2"]   # the shipped model's directory: its tokenizer is the course's

REPEAT_SHARE = 0.25       # share of document slots that are repeated random sequences (as the full corpus)
CHUNK_STEPS = 100         # the stream is generated 100 steps at a time, each chunk from its own seed

# Text kinds and their shares. "base" keeps the relative shares of the shipped base recipe's
# IOI-family kinds (ioi 0.20, scaffold 0.12, story 0.10, solo 0.05, likes 0.05).
BASE = {"ioi": 0.20, "scaffold": 0.12, "story": 0.10, "solo": 0.05, "likes": 0.05}
MIXES = {
    "base": BASE,
    "three": {**BASE, "three": 0.12},
    "named_endings": {**BASE, "named_ending": 0.08},
    "three_named": {**BASE, "three": 0.12, "named_ending": 0.08},
    "three_more": {**BASE, "ioi": 0.14, "three": 0.24},
    "three_named_among": {**BASE, "three": 0.12, "named_ending": 0.08, "named_among": 0.08},
}

# A proxy's change is carried into a full run when, on the validation families, IO is above S
# on at least 0.9 of prompts, IO is the top next token on at least 0.3, and the circuit code
# names name movers carrying at least half the logit difference or S-inhibition heads that
# read repetition (each loses at least half its attention to S2 on ABC prompts) and remove at
# least a quarter of it. Looser than issue 38's floors: a proxy trains minutes, on less text.
CARRY_RULE = {"io_above_s": 0.9, "io_top_token": 0.3, "name_mover_share": 0.5, "s_inhibition_removed": 0.25}


def chunk(tokenizer, names, mix: dict, seed: int, chunk_id: int, n_blocks: int, block_len: int = BLOCK_LEN,
          repeat_max: int = 40):
    """Blocks of chunk ``chunk_id`` of the stream: the same arguments give the same blocks."""
    rng = random.Random(seed * 1_000_003 + chunk_id)
    vocab = range(1, tokenizer.vocab_size)

    def stream():
        while True:
            kinds = [rng.random() < REPEAT_SHARE for _ in range(256)]
            texts = [text_document(rng, names, mix) for r in kinds if not r]
            enc = iter(tokenizer(texts, add_special_tokens=False)["input_ids"])
            for r in kinds:
                yield repeats.repeated_tokens(rng, vocab, max_len=repeat_max, max_total=block_len - 2) if r else next(enc)

    return pack_blocks(stream(), tokenizer.bos_token_id, n_blocks, block_len)


# --- model --------------------------------------------------------------------

@dataclass
class ProxyConfig:
    mix: str = "base"
    seed: int = 1
    steps: int = 5000
    batch: int = 8
    lr: float = 2e-3
    warmup: int = 200
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.1
    n_layer: int = 4
    n_head: int = 8
    d_model: int = 128
    eval_every: int = 1000
    block_len: int = BLOCK_LEN
    repeat_max: int = 40
    device: str = "cpu"       # "cuda" for sweeps; the recorded runs are CPU runs (bit for bit there)


# --- measurement ---------------------------------------------------------------------------

@torch.no_grad()
def behaviour(model, tok, split: str = "validation", n: int = 400, seed: int = 1000) -> dict[str, float]:
    """IOI on ``split``'s families and held-out name pairs: IO above S, the logit difference,
    IO the top next token (over the whole vocabulary), mean p(IO), IO the top-scoring name; and
    IO above S with names never in IOI."""
    model.eval()
    prompts = held_out_ioi_prompts(tok, n, seed, split=split)
    logits = last_token_logits(model, tok, [p.text for p in prompts])
    acc, ld = ioi_measures(model, tok, prompts, logits)
    io = torch.tensor([first_token(tok, p.answer) for p in prompts])    # logits come back on the CPU
    probs = logits.softmax(-1)[torch.arange(len(prompts)), io]
    out = {"io_above_s": acc, "logit_diff": ld, "io_top_token": io_top_token_share(tok, prompts, logits),
           "p_io": float(probs.mean()), "io_top_name": io_top_name_share(model, tok, prompts, logits)}
    unseen = held_out_ioi_prompts(tok, n, seed, unseen_names=True, split=split)
    out["io_above_s_unseen_names"], _ = ioi_measures(model, tok, unseen)
    return out


@torch.no_grad()
def circuit(model, tok, split: str = "validation") -> dict:
    """The circuit's classes named on the validation families (seed 1, as
    :func:`course.circuits.ioi.ioi_circuit`) and measured on ``split`` (validation: a second
    sample, seed 2; test: seed 0, as the card), plus what the card's table does not print:
    each S-inhibition and subject-suppression head's attention to S2 on ABC prompts over
    clean ones. A head that reads *repetition* loses at least half of it on ABC prompts,
    where nothing repeats; one that reads *position* keeps it."""
    from course.circuits import ioi as ic
    from course.data.ioi_dataset import ioi_dataset
    from course.lens import HookedGPT2

    model.set_attn_implementation("eager")              # attention weights for the head scores
    hooked = HookedGPT2(model, tok)
    rep = ic.identify(hooked, ic.runs(hooked, ioi_dataset(hooked, "validation", 24, 8, seed=1)))
    r = ic.runs(hooked, ioi_dataset(hooked, split, 24, 8, seed=2 if split == "validation" else 0))
    f = ic.measure(hooked, r, rep)
    st = ic.head_statistics(hooked, r)
    rows = torch.arange(len(r.data))
    abc = torch.stack([r.abc_cache["pattern", layer][rows, :, r.data.end_pos, r.data.s2_pos].mean(0)
                       for layer in range(hooked.cfg.n_layers)]).cpu()
    ratio = abc / st["end_to_s2"].clamp_min(1e-6)
    name = lambda h: f"L{h[0]}H{h[1]}"                                                # noqa: E731
    out = {"name_movers": [name(h) for h in rep.name_movers],
           "s_inhibition": [name(h) for h in rep.s_inhibition],
           "subject_suppression": [name(h) for h in rep.subject_suppression],
           "duplicate_token": [name(h) for h in rep.duplicate_token],
           "induction": [name(h) for h in rep.induction],
           "abc_over_clean_attention_to_s2": {name(h): round(float(ratio[h]), 3)
                                              for h in rep.s_inhibition + rep.subject_suppression},
           **{k: _figure(v) for k, v in f.items()}}
    out["reads_repetition"] = bool(rep.s_inhibition) and all(float(ratio[h]) <= 0.5 for h in rep.s_inhibition)
    out["heads_attending_to_io"] = {name(h): round(float(st["end_to_io"][h]), 3)
                                    for h in ic._heads_where(st["end_to_io"] >= 0.2)}
    out["written_by"] = written_by(hooked, r)
    return out


@torch.no_grad()
def written_by(hooked, r) -> dict[str, float]:
    """Share of the clean logit difference each part of the stream writes *directly* at the end
    position (through the final layer norm's scale): embeddings, each layer's attention, each
    MLP. Name movers write through "attn_L"; a model that moves IO with early heads and turns it
    into logits with a late MLP writes through "mlp_L" instead."""
    d, rows = r.data, torch.arange(len(r.data))
    _, cache = hooked.run_with_cache(d.clean)
    parts, labels = cache.decompose_resid(return_labels=True)                     # [part, n, pos, d_model]
    parts = parts[:, rows, d.end_pos]
    scale = cache["ln_final.hook_scale"][rows, d.end_pos]                        # [n, 1]
    x = (parts - parts.mean(-1, keepdim=True)) / scale * hooked.ln_final_w
    direction = (hooked.W_U[:, d.io_tok] - hooked.W_U[:, d.s_tok]).T             # [n, d_model]
    share = (x * direction).sum(-1).mean(1) / r.ld_clean
    return {label: round(float(v), 3) for label, v in zip(labels, share)}


def _figure(v: float) -> float | None:
    """Three decimals; a figure with no heads behind it (NaN) is written as null."""
    return None if math.isnan(v) else round(v, 3)


def measure(model, tok) -> dict:
    """Every figure of a proxy: validation (decides), test (recorded only), the heads."""
    out = {"validation": {k: _figure(v) for k, v in behaviour(model, tok, "validation", seed=1000).items()},
           "test": {k: _figure(v) for k, v in behaviour(model, tok, "test", seed=0).items()},
           "circuit_validation": circuit(model, tok, "validation"),
           "circuit_test": circuit(model, tok, "test")}
    model.set_attn_implementation("eager")
    ratio, _ = induction_measures(model, tok, n_seqs=20)
    out["induction_loss_ratio"] = round(ratio, 3)
    out["carried"] = carried(out)
    return out


def carried(m: dict) -> bool:
    """:data:`CARRY_RULE` on a :func:`measure` result (validation figures only)."""
    v, c = m["validation"], m["circuit_validation"]
    heads = (bool(c["name_movers"]) and c["name_mover_share"] >= CARRY_RULE["name_mover_share"]) or (
        c["reads_repetition"] and c["s_inhibition_removed"] >= CARRY_RULE["s_inhibition_removed"])
    return v["io_above_s"] >= CARRY_RULE["io_above_s"] and v["io_top_token"] >= CARRY_RULE["io_top_token"] and heads


# --- training ------------------------------------------------------------------------------

def run(cfg: ProxyConfig, out: Path) -> dict:
    from transformers import AutoTokenizer

    torch.set_num_threads(1)                 # the recorded runs are one thread each, two side by side
    out.mkdir(parents=True, exist_ok=True)
    tok = AutoTokenizer.from_pretrained(str(ASSET))
    names = single_token_names(tok)
    mix = MIXES[cfg.mix]
    device = torch.device(cfg.device)
    if tok.vocab_size != VOCAB_SIZE:
        raise SystemExit(f"the tokenizer in {ASSET} has {tok.vocab_size} tokens, the course model {VOCAB_SIZE}")
    model = build_model(cfg).to(device)     # the full run's architecture, at the proxy's sizes
    opt = optimizer_for(model, cfg)
    log = (out / "log.jsonl").open("w")
    t0, tokens, data, cid = time.time(), 0, None, None
    for step in range(cfg.steps):
        if step // CHUNK_STEPS != cid:
            cid = step // CHUNK_STEPS
            data = chunk(tok, names, mix, cfg.seed, cid, CHUNK_STEPS * cfg.batch, cfg.block_len, cfg.repeat_max)
        row = (step % CHUNK_STEPS) * cfg.batch
        ids = data[0][row:row + cfg.batch].to(device)
        labels = data[1][row:row + cfg.batch].to(device)
        loss = train_step(model, opt, ids, labels, lr_at(step, cfg), clip=1.0)
        tokens += int((labels != -100).sum())
        done = step + 1
        if cfg.eval_every and (done % cfg.eval_every == 0 or done == cfg.steps):
            rec = {"step": done, "tokens": tokens, "loss": round(loss.item(), 4), "sec": round(time.time() - t0),
                   **{k: round(v, 3) for k, v in behaviour(model, tok, "validation", n=200).items()}}
            log.write(json.dumps(rec) + "\n")
            log.flush()
            print(json.dumps(rec), flush=True)
    train_s = time.time() - t0
    model.eval()
    model.save_pretrained(out)
    tok.save_pretrained(out)
    result = {"config": asdict(cfg), "train_seconds": round(train_s), "tokens": tokens, **measure(model, tok)}
    (out / "result.json").write_text(json.dumps(result, indent=2))
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, help="where the run writes its model, log and result.json")
    ap.add_argument("--measure", type=Path, metavar="DIR", help="re-measure the proxy saved in DIR instead")
    for f, default in asdict(ProxyConfig()).items():
        ap.add_argument("--" + f.replace("_", "-"), type=type(default), default=default)
    args = vars(ap.parse_args(argv))
    saved = args.pop("measure")
    if saved:
        from transformers import AutoTokenizer, GPT2LMHeadModel
        if not (saved / "config.json").exists():
            raise SystemExit(f"{saved} holds no saved proxy (no config.json): give the --out folder of a run")
        torch.set_num_threads(1)
        model = GPT2LMHeadModel.from_pretrained(str(saved), attn_implementation="eager").eval()
        tok = AutoTokenizer.from_pretrained(str(saved))
        print(json.dumps(measure(model, tok), indent=2))
        return 0
    out = args.pop("out")
    if out is None:
        raise SystemExit("give --out DIR (where the run is written), or --measure DIR to re-measure a saved run")
    if args["mix"] not in MIXES:
        raise SystemExit(f"unknown mix {args['mix']!r}: choose one of {', '.join(MIXES)}")
    result = run(ProxyConfig(**args), out)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
