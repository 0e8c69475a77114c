"""Measure the phenomena the course teaches on a model, on held-out data.

    python -m course.models.evaluate [PATH] [--json]

Every figure here is computed from the model in front of you; the model card and
the tests quote these functions, never typed-in numbers.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F

from course.data import addition, facts, ioi
from course.data.repeats import repeated_batch
from course.data.splits import ioi_split
from course.models.tokenizer import single_token_names

# Floors the shipped model must reach (issue: "figures the main model must reach").
TARGETS = {
    "prev_token_score": (">=", 0.7),
    "induction_loss_ratio": ("<=", 0.3),
    "induction_head_score": (">=", 0.4),
    "ioi_accuracy": (">=", 0.9),
    "ioi_logit_diff": (">=", 2.0),
    "fact_accuracy": (">=", 0.95),
    "addition_accuracy": (">=", 0.95),
}


@dataclass
class Report:
    figures: dict = field(default_factory=dict)
    heads: dict = field(default_factory=dict)

    def meets(self, name: str) -> bool:
        op, floor = TARGETS[name]
        value = self.figures[name]
        return value >= floor if op == ">=" else value <= floor

    def table(self) -> str:
        lines = [f"{'figure':34s} {'value':>9s}  target   ok"]
        for name, value in self.figures.items():
            target = " ".join(map(str, TARGETS[name])) if name in TARGETS else ""
            ok = ("yes" if self.meets(name) else "NO") if name in TARGETS else ""
            lines.append(f"{name:34s} {value:9.3f}  {target:7s}  {ok}")
        for name, where in self.heads.items():
            lines.append(f"{name:34s} {where}")
        return "\n".join(lines)


def _device(model) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def _forward(model, ids: torch.Tensor, attentions: bool = False):
    return model(ids.to(_device(model)), output_attentions=attentions)


def _encode_prompts(tokenizer, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-aligned batch with BOS; returns (ids [n, pos], index of each prompt's last token)."""
    rows = [[tokenizer.bos_token_id] + tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), tokenizer.bos_token_id, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
    return ids, torch.tensor([len(r) - 1 for r in rows])


def _last_logits(model, tokenizer, texts: list[str], batch: int = 256) -> torch.Tensor:
    out = []
    for i in range(0, len(texts), batch):
        ids, last = _encode_prompts(tokenizer, texts[i:i + batch])
        logits = _forward(model, ids).logits.float().cpu()
        out.append(logits[torch.arange(len(last)), last])
    return torch.cat(out)


def _first_token(tokenizer, text: str) -> int:
    return tokenizer(text, add_special_tokens=False)["input_ids"][0]


# --- attention heads ------------------------------------------------------------

def previous_token_scores(model, tokenizer, n: int = 200, seed: int = 0) -> torch.Tensor:
    """[layer, head] mean attention from each position i >= 2 to i - 1, on held-out IOI text."""
    texts = [p.text for p in held_out_ioi_prompts(tokenizer, n, seed)]
    ids, last = _encode_prompts(tokenizer, texts)
    attn = torch.stack(_forward(model, ids, attentions=True).attentions).float().cpu()  # [L, b, H, q, k]
    q = torch.arange(ids.shape[1])
    diag = attn[..., q[2:], q[2:] - 1]                                   # [L, b, H, q-2]
    valid = (q[2:][None, :] <= last[:, None]).float()                    # ignore padding
    return (diag * valid[None, :, None]).sum((1, 3)) / valid.sum()


def induction_measures(model, tokenizer, n_seqs: int = 40, lengths=(20, 30, 40, 50), seed: int = 0):
    """Loss ratio (second repeat / first) and [layer, head] induction scores.

    The induction score is the mean attention from a token in the second repeat to
    the token just after its first occurrence.
    """
    first, second, scores = [], [], []
    vocab = range(1, tokenizer.vocab_size)
    for j, n in enumerate(lengths):
        ids = repeated_batch(n_seqs, n, vocab, tokenizer.bos_token_id, seed=seed + j)
        out = _forward(model, ids, attentions=True)
        logp = F.log_softmax(out.logits.float().cpu(), -1)
        nll = -logp[:, :-1].gather(-1, ids[:, 1:, None].cpu())[..., 0]  # [b, 2n]; nll[:, i] predicts token i+1
        first.append(nll[:, 1:n].mean())      # predictions of tokens 2..n (token 1 is unpredictable either way)
        second.append(nll[:, n + 1:].mean())  # predictions of tokens n+2..2n
        attn = torch.stack(out.attentions).float().cpu()                 # [L, b, H, q, k]
        q = torch.arange(n + 1, 2 * n + 1)                               # second-repeat positions
        scores.append(attn[..., q, q - n + 1].mean((1, 3)))
    ratio = float(torch.stack(second).mean() / torch.stack(first).mean())
    return ratio, torch.stack(scores).mean(0)


# --- IOI ---------------------------------------------------------------------------

def held_out_ioi_prompts(tokenizer, n: int = 400, seed: int = 0, unseen_names: bool = False) -> list[ioi.IOIPrompt]:
    """Prompts on held-out name pairs and held-out templates (or on names never in IOI)."""
    split = ioi_split(single_token_names(tokenizer))
    rng = random.Random(seed)
    templates = sorted(split.held_out_templates)
    pairs = [tuple(sorted(p)) for p in sorted(split.held_out_pairs, key=sorted)]
    prompts = []
    for _ in range(n):
        intro, action = rng.choice(templates)
        io, s = rng.sample(split.unseen_names, 2) if unseen_names else rng.sample(rng.choice(pairs), 2)
        prompts.append(ioi.ioi_prompt(rng, io, s, intro, action))
    return prompts


def ioi_measures(model, tokenizer, prompts: list[ioi.IOIPrompt]) -> tuple[float, float]:
    """(accuracy of logit IO > logit S, mean logit IO - logit S) at the final position."""
    logits = _last_logits(model, tokenizer, [p.text for p in prompts])
    io = torch.tensor([_first_token(tokenizer, p.answer) for p in prompts])
    s = torch.tensor([_first_token(tokenizer, p.distractor) for p in prompts])
    rows = torch.arange(len(prompts))
    diff = logits[rows, io] - logits[rows, s]
    return float((diff > 0).float().mean()), float(diff.mean())


# --- facts and addition ------------------------------------------------------------

def fact_accuracy(model, tokenizer, prompts=None) -> float:
    """Share of held-out-phrasing fact prompts whose top next token is the answer's first token."""
    prompts = prompts or facts.held_out_fact_prompts()
    logits = _last_logits(model, tokenizer, [p.text for p in prompts])
    want = torch.tensor([_first_token(tokenizer, p.answer) for p in prompts])
    return float((logits.argmax(-1) == want).float().mean())


@torch.no_grad()
def greedy_completions(model, tokenizer, texts: list[str], n_tokens: int) -> list[str]:
    ids, last = _encode_prompts(tokenizer, texts)
    # All prompts here have the same length (fixed-format sums), so append in place.
    assert bool((last == last[0]).all()), "greedy_completions needs prompts of equal token length"
    for _ in range(n_tokens):
        nxt = _forward(model, ids).logits[:, -1].argmax(-1).cpu()
        ids = torch.cat([ids, nxt[:, None]], 1)
    return tokenizer.batch_decode(ids[:, last[0] + 1:])


def addition_measures(model, tokenizer, prompts=None) -> dict:
    """Exact-sum accuracy on held-out pairs, overall and split by carry."""
    prompts = prompts or addition.held_out_addition_prompts()
    outs = greedy_completions(model, tokenizer, [p.text for p in prompts], n_tokens=5)
    correct = torch.tensor([o.startswith(p.answer) and not o[len(p.answer):][:1].isdigit()
                            for o, p in zip(outs, prompts)])
    carry = torch.tensor([p.carry for p in prompts])
    return {
        "addition_accuracy": float(correct.float().mean()),
        "addition_accuracy_carry": float(correct[carry].float().mean()),
        "addition_accuracy_no_carry": float(correct[~carry].float().mean()),
    }


# --- everything --------------------------------------------------------------------

def _best(scores: torch.Tensor, min_layer: int = 0) -> tuple[float, str]:
    sub = scores[min_layer:]
    flat = int(sub.argmax())
    layer, head = divmod(flat, sub.shape[1])
    return float(sub.max()), f"L{layer + min_layer}H{head}"


def evaluate(model, tokenizer, quick: bool = False) -> Report:
    model.eval()
    n = 100 if quick else 400
    rep = Report()
    prev = previous_token_scores(model, tokenizer, n=min(n, 200))
    rep.figures["prev_token_score"], rep.heads["prev_token_head"] = _best(prev[:1])
    ratio, ind = induction_measures(model, tokenizer, n_seqs=10 if quick else 40)
    rep.figures["induction_loss_ratio"] = ratio
    rep.figures["induction_head_score"], rep.heads["induction_head"] = _best(ind, min_layer=1)
    acc, diff = ioi_measures(model, tokenizer, held_out_ioi_prompts(tokenizer, n))
    rep.figures["ioi_accuracy"], rep.figures["ioi_logit_diff"] = acc, diff
    acc_u, diff_u = ioi_measures(model, tokenizer, held_out_ioi_prompts(tokenizer, n, unseen_names=True))
    rep.figures["ioi_accuracy_unseen_names"], rep.figures["ioi_logit_diff_unseen_names"] = acc_u, diff_u
    rep.figures["fact_accuracy"] = fact_accuracy(model, tokenizer)
    rep.figures["fact_accuracy_validation_openers"] = fact_accuracy(model, tokenizer, facts.validation_fact_prompts())
    adds = addition.held_out_addition_prompts()
    rep.figures.update(addition_measures(model, tokenizer, adds[:200] if quick else adds))
    return rep


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("path", nargs="?", default="course-gpt2", help="model name or directory (default: the bundled model)")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args(argv)
    from course.models.loading import load_hf_model

    model, tokenizer = load_hf_model(args.path)
    rep = evaluate(model, tokenizer)
    print(json.dumps(asdict(rep), indent=2) if args.json else rep.table())
    return 0 if all(rep.meets(k) for k in TARGETS) else 1


if __name__ == "__main__":
    sys.exit(main())
