"""Measure the phenomena the course teaches on a model, on held-out data.

    python -m course.training.evaluate [PATH] [--json]

Every figure here is computed from the model in front of you; the model card and
the tests quote these functions, never typed-in numbers.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F

from course.data import addition, facts, ioi
from course.data.repeats import repeated_batch
from course.data.ioi_held_out import handwritten_ioi_prompts, held_out_ioi_prompts, name_group_prompts
from course.data.vocabulary import single_token_names

# Floors the shipped model must reach, on the test split (issues 3 and 11).
TARGETS = {
    "prev_token_score": (">=", 0.7),
    "induction_loss_ratio": ("<=", 0.3),
    "induction_head_score": (">=", 0.4),
    "ioi_accuracy": (">=", 0.9),
    "ioi_logit_diff": (">=", 2.0),
    "ioi_accuracy_unseen_names": (">=", 0.9),
    "fact_accuracy": (">=", 0.95),
    "addition_accuracy": (">=", 0.95),
}
# Issue 38's floors for IOI done as GPT-2 small does it (IO *predicted*, not only ranked above S),
# on the test families: printed on the card and asserted by the tests. Checkpoints are not chosen
# on them (TARGETS decides which checkpoints are eligible; IO the top token is a test-only figure).
IOI_FLOORS = {
    "ioi_io_top_token": (">=", 0.5),
    "ioi_io_top_name": (">=", 0.85),
    "ioi_accuracy": (">=", 0.95),
    "ioi_logit_diff": (">=", 3.0),
    "ioi_accuracy_unseen_names": (">=", 0.9),
}
# What each figure is measured on, by split. "validation" data chooses the checkpoint
# during training; "test" data is only ever reported (the card, the tests).
SPLIT_DATA = {
    "validation": "IOI: the validation families; facts: the validation openers; addition: half of the held-out sums",
    "test": "IOI: the test families (intro, re-mention and ending all held out); facts: the held-out phrasing; "
            "addition: the other half of the held-out sums",
}


@dataclass
class Report:
    figures: dict = field(default_factory=dict)
    heads: dict = field(default_factory=dict)
    circuit: object = None          # a course.circuits.ioi.CircuitReport, on the test split

    def meets(self, name: str, targets: dict = TARGETS) -> bool:
        """Whether figure ``name`` meets its entry in ``targets`` (:data:`TARGETS` or :data:`IOI_FLOORS`)."""
        op, floor = targets[name]
        value = self.figures[name]
        return value >= floor if op == ">=" else value <= floor

    def all_met(self) -> bool:
        from course.circuits.ioi import CIRCUIT_TARGETS

        circuit_ok = self.circuit is None or all(self.circuit.meets(k) for k in CIRCUIT_TARGETS)
        return all(self.meets(k) for k in TARGETS if k in self.figures) and circuit_ok

    def table(self) -> str:
        lines = [f"{'figure':34s} {'value':>9s}  target   ok"]
        for name, value in self.figures.items():
            target = " ".join(map(str, TARGETS[name])) if name in TARGETS else ""
            ok = ("yes" if self.meets(name) else "NO") if name in TARGETS else ""
            lines.append(f"{name:34s} {value:9.3f}  {target:7s}  {ok}")
        for name, where in self.heads.items():
            lines.append(f"{name:34s} {where}")
        if self.circuit is not None:
            lines += ["", "IOI circuit (classes named on the validation families, figures on the test families):",
                      self.circuit.table()]
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

def final_family_figures(model, tokenizer, n: int = 400, seed: int = 0) -> dict[str, float]:
    """IOI on the final families (``course.data.ioi.FINAL_KINDS``): accuracy and mean logit
    difference on held-out name pairs and on names never in IOI.

    Not part of :func:`evaluate`, so that comparing training runs never shows them: they are
    measured for a model already chosen to ship (``write_card``, ``evaluate --final``)."""
    figures = {}
    for suffix, unseen in (("", False), ("_unseen_names", True)):
        acc, diff = ioi_measures(model, tokenizer, held_out_ioi_prompts(tokenizer, n, seed, unseen, "final"))
        figures["ioi_accuracy" + suffix], figures["ioi_logit_diff" + suffix] = acc, diff
    return figures


def ioi_by_name_group(model, tokenizer, split: str = "test", n: int = 400, seed: int = 0) -> dict[str, tuple[float, float]]:
    """IOI (accuracy, mean logit difference) for each group of :func:`name_group_prompts`.
    It tells a rule that does not carry over to new names from a preference for the names that
    IOI trained: "IO kept out" low while "S kept out" is high is the latter."""
    return {group: ioi_measures(model, tokenizer, prompts)
            for group, prompts in name_group_prompts(tokenizer, split, n, seed).items()}


def io_top_name_share(model, tokenizer, prompts: list[ioi.IOIPrompt], logits: torch.Tensor | None = None) -> float:
    """Share of prompts whose highest-scoring name at the end, among all the course's
    single-token names, is IO. Accuracy only compares IO with S; this says whether the model
    also names IO rather than someone who is not in the sentence (a model that only knows
    whom *not* to name scores high on accuracy and low here). ``logits``: the prompts'
    final-position logits [n_prompts, vocab] when already computed."""
    names = single_token_names(tokenizer)
    ids = torch.tensor([_first_token(tokenizer, " " + name) for name in names])
    if logits is None:
        logits = _last_logits(model, tokenizer, [p.text for p in prompts])
    io = torch.tensor([names.index(p.io) for p in prompts])
    return float((logits[:, ids].argmax(-1) == io).float().mean())


def io_top_token_share(tokenizer, prompts: list[ioi.IOIPrompt], logits: torch.Tensor) -> float:
    """Share of prompts whose top next token, over the whole vocabulary, is IO's first token:
    the model *predicts* the indirect object. ``logits``: the prompts' final-position logits
    ``[n_prompts, vocab]``."""
    io = torch.tensor([_first_token(tokenizer, p.answer) for p in prompts])
    return float((logits.argmax(-1).cpu() == io).float().mean())


def ioi_measures(model, tokenizer, prompts: list[ioi.IOIPrompt],
                 logits: torch.Tensor | None = None) -> tuple[float, float]:
    """(accuracy of logit IO > logit S, mean logit IO - logit S) at the final position;
    ``logits`` as in :func:`io_top_name_share`."""
    if logits is None:
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
def fact_accuracy_mlps_ablated(model, tokenizer, where: str = "subject", prompts=None) -> float:
    """Fact accuracy when every MLP's output at ``where`` ("subject": the country's tokens;
    "end": the last token) is replaced by that layer's mean output over all prompt
    positions (mean ablation).

    The two together say where the facts are recalled: through the MLPs at the subject
    (as ROME found in GPT-2 XL), or at the end of the prompt.
    """
    prompts = prompts or facts.held_out_fact_prompts()
    ids, last = _encode_prompts(tokenizer, [p.text for p in prompts])
    mask = torch.zeros_like(ids, dtype=torch.bool)
    for i, p in enumerate(prompts):
        if where == "end":
            mask[i, last[i]] = True
            continue
        start = p.text.index(p.country)
        before = len(tokenizer(p.text[:start].rstrip(), add_special_tokens=False)["input_ids"]) if start else 0
        upto = len(tokenizer(p.text[:start + len(p.country)], add_special_tokens=False)["input_ids"])
        mask[i, 1 + before:1 + upto] = True                          # +1: BOS
    valid = torch.arange(ids.shape[1])[None] <= last[:, None]
    dev = _device(model)
    mask, valid = mask.to(dev), valid.to(dev)

    def ablate(module, args, out):
        return torch.where(mask[..., None], out[valid].mean(0), out)

    handles = [blk.mlp.register_forward_hook(ablate) for blk in model.transformer.h]
    try:
        logits = _forward(model, ids).logits.float().cpu()
    finally:
        for h in handles:
            h.remove()
    want = torch.tensor([_first_token(tokenizer, p.answer) for p in prompts])
    return float((logits[torch.arange(len(prompts)), last].argmax(-1) == want).float().mean())


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


def evaluate(model, tokenizer, quick: bool = False, split: str = "test", circuit: bool | None = None) -> Report:
    """Every figure of the card on ``split``'s data ("test" or "validation", see SPLIT_DATA).

    The test split adds IOI on hand-written sentences and on the training families (for
    comparison), and, unless ``quick``, the IOI circuit (course.circuits.ioi; it
    wraps ``model`` in the lens, so call it last). ``quick`` uses fewer prompts.
    """
    model.eval()
    n = 100 if quick else 400
    seed = 0 if split == "test" else 1000     # other random sequences and prompts for validation
    rep = Report()
    ratio, ind = induction_measures(model, tokenizer, n_seqs=10 if quick else 40, seed=seed)
    rep.figures["induction_loss_ratio"] = ratio
    rep.figures["induction_head_score"], rep.heads["induction_head"] = _best(ind, min_layer=1)
    # The previous-token head an induction head can compose with sits in an earlier layer.
    below = int(rep.heads["induction_head"][1:].split("H")[0])
    prev = previous_token_scores(model, tokenizer, n=min(n, 200), seed=seed)
    rep.figures["prev_token_score"], rep.heads["prev_token_head"] = _best(prev[:below])
    rep.figures = {"prev_token_score": rep.figures.pop("prev_token_score"), **rep.figures}   # card order
    # One forward pass per prompt set: accuracy and the top name read the same logits.
    ioi_prompts = held_out_ioi_prompts(tokenizer, n, seed, split=split)
    unseen_prompts = held_out_ioi_prompts(tokenizer, n, seed, True, split)
    ioi_logits, unseen_logits = (_last_logits(model, tokenizer, [p.text for p in ps])
                                 for ps in (ioi_prompts, unseen_prompts))
    acc, diff = ioi_measures(model, tokenizer, ioi_prompts, ioi_logits)
    rep.figures["ioi_accuracy"], rep.figures["ioi_logit_diff"] = acc, diff
    acc_u, diff_u = ioi_measures(model, tokenizer, unseen_prompts, unseen_logits)
    rep.figures["ioi_accuracy_unseen_names"], rep.figures["ioi_logit_diff_unseen_names"] = acc_u, diff_u
    if split == "test":
        rep.figures["ioi_io_top_token"] = io_top_token_share(tokenizer, ioi_prompts, ioi_logits)
        rep.figures["ioi_io_top_name"] = io_top_name_share(model, tokenizer, ioi_prompts, ioi_logits)
        rep.figures["ioi_io_top_name_unseen_names"] = io_top_name_share(model, tokenizer, unseen_prompts,
                                                                        unseen_logits)
        acc_h, diff_h = ioi_measures(model, tokenizer, handwritten_ioi_prompts(tokenizer))
        rep.figures["ioi_accuracy_handwritten"], rep.figures["ioi_logit_diff_handwritten"] = acc_h, diff_h
        acc_t, diff_t = ioi_measures(model, tokenizer, held_out_ioi_prompts(tokenizer, n, seed, split="train"))
        rep.figures["ioi_accuracy_training_families"], rep.figures["ioi_logit_diff_training_families"] = acc_t, diff_t
        rep.figures["fact_accuracy"] = fact_accuracy(model, tokenizer)
        rep.figures["fact_accuracy_subject_mlps_ablated"] = fact_accuracy_mlps_ablated(model, tokenizer, "subject")
        rep.figures["fact_accuracy_end_mlps_ablated"] = fact_accuracy_mlps_ablated(model, tokenizer, "end")
    else:
        rep.figures["fact_accuracy"] = fact_accuracy(model, tokenizer, facts.validation_fact_prompts())
    adds = addition.held_out_addition_prompts(split)
    rep.figures.update(addition_measures(model, tokenizer, adds[:200] if quick else adds))
    if circuit if circuit is not None else (split == "test" and not quick):
        from course.lens import HookedGPT2
        from course.circuits.ioi import ioi_circuit

        rep.circuit = ioi_circuit(HookedGPT2(model, tokenizer))
    return rep


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("path", nargs="?", default="course-gpt2", help="model name or directory (default: the bundled model)")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    ap.add_argument("--by-name-group", metavar="SPLIT", choices=("train", "validation", "test"),
                    help="print only IOI on SPLIT's families by whether IO and S are names kept out of IOI "
                         "(accuracy, logit difference, and how often IO is the top-scoring name)")
    ap.add_argument("--final", action="store_true",
                    help="print only IOI on the final families, which are for a model already chosen to ship")
    args = ap.parse_args(argv)
    from course.models.loading import load_hf_model

    model, tokenizer = load_hf_model(args.path)
    if args.final:
        for name, value in final_family_figures(model, tokenizer).items():
            print(f"final families, {name:32s} {value:7.3f}")
        return 0
    if args.by_name_group:
        for group, prompts in name_group_prompts(tokenizer, args.by_name_group).items():
            logits = _last_logits(model, tokenizer, [p.text for p in prompts])
            acc, diff = ioi_measures(model, tokenizer, prompts, logits)
            top = io_top_name_share(model, tokenizer, prompts, logits)
            print(f"{args.by_name_group} families, {group:14s} accuracy {acc:.3f}  logit difference {diff:6.2f}"
                  f"  IO the top name {top:.3f}")
        return 0
    rep = evaluate(model, tokenizer)
    print(json.dumps(asdict(rep), indent=2) if args.json else rep.table())
    return 0 if rep.all_met() else 1


if __name__ == "__main__":
    sys.exit(main())
