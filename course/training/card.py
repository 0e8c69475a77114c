"""Write a model directory's MODEL_CARD.md from its training record and a fresh evaluation.

    python -m course.training.card course/assets/course-gpt2

Every figure in the card is measured by :mod:`course.training.evaluate` when the card is
written, and saved beside it as ``evaluation.json`` so the tests can hold the card to it.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from dataclasses import asdict
from pathlib import Path

from course.data.corpus import BLOCK_LEN, ONE_PERSON_KINDS, REPEAT_SHARE, recipe
from course.data.splits import HELD_OUT_PAIR_FRACTION, N_NAMES_NEVER_IN_IOI
from course.data.facts import OPENER_TEMPLATES, VALIDATION_OPENERS
from course.data import ioi
from course.data.ioi_handwritten import HANDWRITTEN
from course.training.evaluate import (IOI_FLOORS, SPLIT_DATA, TARGETS, evaluate, final_family_figures,
                                      ioi_by_name_group)
from course.circuits.ioi import (CIRCUIT_TARGETS, DUPLICATE_ATTENTION, MIN_SINGLE_EFFECT, NM_ATTENTION,
                                       S_INHIBITION_ATTENTION)
from course.models.loading import BUNDLED
from course.training.train import TrainConfig
from course.training.reproduce import COMPARED, current_record

LABELS = {
    "prev_token_score": "previous-token head (below the induction head): mean attention to position i−1",
    "induction_loss_ratio": "induction: loss on 2nd repeat / 1st (random 20–50 tokens)",
    "induction_head_score": "induction head (layer ≥ 1): attention to the token after the earlier copy",
    "ioi_accuracy": "IOI accuracy, test families (intro, re-mention and ending all held out), held-out name pairs",
    "ioi_logit_diff": "IOI mean logit difference (IO − S), test families",
    "ioi_accuracy_unseen_names": "IOI accuracy, test families, names never seen in IOI sentences",
    "ioi_logit_diff_unseen_names": "IOI logit difference, test families, names never seen in IOI",
    "ioi_io_top_token": "IOI, test families: IO is the top next token over the whole vocabulary (predicted)",
    "ioi_io_top_name": "IOI, test families: IO is the top-scoring of all the course's names (not only above S)",
    "ioi_io_top_name_unseen_names": "the same, names never seen in IOI",
    "ioi_accuracy_handwritten": f"IOI accuracy, {len(HANDWRITTEN)} hand-written sentences outside the grammar",
    "ioi_logit_diff_handwritten": "IOI logit difference, hand-written sentences",
    "ioi_accuracy_training_families": "IOI accuracy, training families (new prompts; for comparison)",
    "ioi_logit_diff_training_families": "IOI logit difference, training families",
    "fact_accuracy": "facts: exact next token, held-out phrasing (600 facts)",
    "fact_accuracy_subject_mlps_ablated": "facts, held-out phrasing, every MLP mean-ablated at the country's tokens",
    "fact_accuracy_end_mlps_ablated": "facts, held-out phrasing, every MLP mean-ablated at the last token",
    "addition_accuracy": "addition: exact two-digit sums, held-out test pairs",
    "addition_accuracy_carry": "addition with a carry",
    "addition_accuracy_no_carry": "addition without a carry",
}


# The training log's evaluations are on validation data: say so in their labels.
ON_VALIDATION = {"test families (intro, re-mention and ending all held out)": "validation families",
                 "test families": "validation families", "held-out test pairs": "validation pairs",
                 "held-out phrasing (600 facts)": "validation openers"}


def _validation_label(name: str) -> str:
    label = LABELS[name]
    for test, val in ON_VALIDATION.items():
        label = label.replace(test, val)
    return label


def _emergence(log_path: Path) -> list[str]:
    """When each phenomenon first reached its floor, from the training log's evaluations."""
    if not log_path.exists():
        return []
    evals = [json.loads(l) for l in log_path.read_text().splitlines() if "tokens_seen" in l]
    lines = []
    for name, (op, floor) in TARGETS.items():
        hit = next((e for e in evals if (e[name] >= floor if op == ">=" else e[name] <= floor)), None)
        when = f"by {hit['tokens_seen'] / 1e6:.1f} M tokens (step {hit['step']})" if hit else "not during training"
        lines.append(f"- {_validation_label(name)}: {when}")
    return lines


CIRCUIT_LABELS = {
    "logit_diff_clean": "mean logit difference, clean prompts",
    "logit_diff_abc": "mean logit difference, ABC prompts (a third name at S2)",
    "name_mover_attention_to_io": "name movers' mean attention from the end to IO",
    "name_mover_share": "name movers' direct effects / logit difference",
    "subject_suppression_share": "subject-suppression heads' direct effects / logit difference",
    "s_inhibition_removed": "share removed: S-inhibition (ABC) → name movers' queries only",
    "duplicate_removed": "share removed: duplicate/induction (ABC) → keys and values of the heads reading S2 only",
    "outside_ablated_kept": "share kept: every head outside the circuit mean-ablated (ABC)",
    "circuit_ablated_left": "share left: the circuit's heads mean-ablated (ABC)",
}


def _command(train: dict) -> str:
    """The training command that reproduces these weights: every setting that differs from
    ``course.training.train``'s defaults (the shipped model's) is a flag, since a flag the card
    leaves out is a command that trains something else."""
    defaults = asdict(TrainConfig())
    extra = ""
    # -1 means "the model's seed": compare the tokenizer seeds that the two commands would use.
    used = train.get("tokenizer_seed", -1) if train.get("tokenizer_seed", -1) >= 0 else train["seed"]
    if used != (defaults["tokenizer_seed"] if defaults["tokenizer_seed"] >= 0 else train["seed"]):
        extra += f" --tokenizer-seed {used}"
    for field, default in defaults.items():
        if field in ("seed", "steps", "tokenizer_seed"):
            continue
        if train.get(field, default) != default:
            extra += f" --{field.replace('_', '-')} {shlex.quote(str(train[field]))}"
    return f"python -m course.training.train --out DIR --steps {train['steps']} --seed {train['seed']}{extra}"


def _recipient_text(r) -> str:
    if "recipient" not in r.mix:
        return ""
    return ("\nRecipient sentences (training families only) name one person where an ending wants one, after a\n"
            "common-noun subject (\"The doctor met Lisa at the park. Later, the doctor gave a ball to Lisa.\"):\n"
            "the person an ending wants is whichever name the context holds." + _subject_text(r))


def _subject_text(r) -> str:
    if "subject" not in r.mix:
        return ""
    return ("\nSubject sentences mirror them: the named person is the repeated subject and the ending wants the\n"
            "common noun (\"Lisa met the doctor at the park. Later, Lisa gave a ball to the doctor.\").")


def _stand_in_text(r) -> str:
    if "stand_in" not in r.mix:
        return ""
    return ("\nStand-in sentences (`course.data.stand_ins`, \"stand_in\" above) are training-family and free-form\n"
            "IOI sentences whose two people are other one-token words, never a first name (\"After Velish and Stukri\n"
            "went to the store, Stukri gave a ball to Velish.\"): the rule then pays off only as a mechanism that\n"
            "works for any token, not as knowledge about the IOI names.")


def _kept_out_text(r) -> str:
    if not r.kept_out_share:
        return ""
    kinds = ", ".join(k for k in ONE_PERSON_KINDS if k in r.mix)
    return (f"\n{r.kept_out_share:.0%} of the {kinds} documents name only those {N_NAMES_NEVER_IN_IOI} people, so "
            f"each is about as common as an IOI name and as often the person a sentence ends on.")


def _selection(train: dict) -> str:
    if "selected_step" not in train:
        return ""
    weights = train.get("selected_weights", "raw")
    what = ("those" if weights == "raw" else
            f"an exponential moving average of the weights (decay {weights.removeprefix('ema')}, updated after "
            f"every step; training never reads it; one of the averages {train['ema_decays']} evaluated beside "
            "the raw weights, which are not eligible) as it stood at the end")
    rule = ("Evaluated every {e} steps on validation data only; the weights shipped are {w} of step {s}, "
            "chosen by {by} among the evaluations meeting every floor.")
    return rule.format(e=train.get("eval_every", "?"), w=what, s=train["selected_step"], by=train.get("selected_by", "?"))


def _reproduction_text(path: Path) -> str:
    """What ``python -m course.training.reproduce --record`` found, while it still names these weights."""
    rec = current_record(path)
    if rec is None:
        return ("\n\nReproduction: not yet checked for these weights (`python -m course.training.reproduce --record` "
                "retrains them from the seed and compares).")
    digests = "; ".join(f"{f} {rec['sha256'][f]['model'][:16]}…" for f in COMPARED)
    if rec["identical"]:
        return (f"\n\nReproduction: on {rec['checked']}, `python -m course.training.reproduce --record` retrained this "
                f"model from the seed with the command above (CPU, {rec['config']['threads']} thread(s); "
                f"{rec['machine']}; {rec['rerun_wall_seconds'] / 60:.0f} minutes) and got the same bytes, "
                f"SHA-256 identical ({digests}).")
    return (f"\n\n**Reproduction failed**: on {rec['checked']}, retraining from the seed with the command above "
            f"({rec['machine']}) gave different files than these ({digests} here).")


def _heads(heads) -> str:
    return ", ".join(f"L{l}H{h}" for l, h in heads) or "**none found**"


def _circuit_section(c) -> str:
    rows = "\n".join(
        f"| {CIRCUIT_LABELS[k]} | {v:.3f} | {' '.join(map(str, CIRCUIT_TARGETS[k])) if k in CIRCUIT_TARGETS else ''} |"
        for k, v in c.figures.items())
    return f"""Measured by `python -m course.circuits.ioi` (also part of `evaluate`). The heads of each class
are named on the validation families and every figure is measured on the test families,
each prompt with its "ABC" counterpart (a third name in place of S at S2); mean ablation
is over the ABC prompts of the same sentence shape.

| class | heads | identified by |
| --- | --- | --- |
| name movers | {_heads(c.name_movers)} | attention end → IO ≥ {NM_ATTENTION} and a positive direct effect on logit(IO) − logit(S) |
| S-inhibition | {_heads(c.s_inhibition)} | attention end → S2 ≥ {S_INHIBITION_ATTENTION}; alone, path-patched (ABC) into the name movers' queries, removes ≥ {MIN_SINGLE_EFFECT:.0%} |
| subject-suppression | {_heads(c.subject_suppression)} | attention end → S2 ≥ {NM_ATTENTION} and a positive direct effect (S pushed down); not one of Wang et al.'s classes, like GPT-2 small's copy-suppression heads |
| duplicate-token | {_heads(c.duplicate_token)} | attention S2 → S1 ≥ {DUPLICATE_ATTENTION}; alone, path-patched into the keys and values of the S-inhibition and subject-suppression heads, removes ≥ {MIN_SINGLE_EFFECT:.0%} |
| induction | {_heads(c.induction)} | attention S2 → S1+1 ≥ {DUPLICATE_ATTENTION}; the same path-patching test |

| figure | value | target |
| --- | --- | --- |
{rows}
"""


def write_card(path: Path) -> Path:
    from course.models.loading import load_hf_model

    model, tokenizer = load_hf_model(path, device="cpu")
    report = evaluate(model, tokenizer)
    final = final_family_figures(model, tokenizer)
    groups = ioi_by_name_group(model, tokenizer, "test")
    circuit = report.circuit
    (path / "evaluation.json").write_text(json.dumps(
        {"figures": report.figures, "heads": report.heads, "final_families": final,
         "name_groups": {g: {"ioi_accuracy": a, "ioi_logit_diff": d} for g, (a, d) in groups.items()},
         "circuit": {"figures": circuit.figures, "name_movers": circuit.name_movers, "s_inhibition": circuit.s_inhibition,
                     "subject_suppression": circuit.subject_suppression,
                     "duplicate_token": circuit.duplicate_token, "induction": circuit.induction}}, indent=2) + "\n")
    train = json.loads((path / "training_config.json").read_text())
    c = model.config
    n_params = sum(p.numel() for p in model.parameters())
    rows = "\n".join(
        f"| {LABELS[k]} | {v:.3f} | {' '.join(map(str, TARGETS[k])) if k in TARGETS else ''} |"
        for k, v in report.figures.items())
    corpus_recipe = recipe(train.get("recipe", TrainConfig.recipe))
    total = sum(corpus_recipe.mix.values())     # weights, shares once divided by their sum
    mix = ", ".join(f"{k} {v / total:.0%}" for k, v in corpus_recipe.mix.items())
    missed = [f"- **Target not met: {LABELS[k]}** — {report.figures[k]:.3f}, target {' '.join(map(str, TARGETS[k]))}."
              for k in TARGETS if not report.meets(k)]
    missed += [f"- **IOI floor of version 3 not met: {LABELS[k]}** — {report.figures[k]:.3f}, floor "
               f"{' '.join(map(str, IOI_FLOORS[k]))} (issue 38; the record of recipes below says what was tried)."
               for k in IOI_FLOORS if not report.meets(k, IOI_FLOORS)]
    missed += [f"- **Target not met: {CIRCUIT_LABELS[k]}** — {circuit.figures[k]:.3f}, target "
               f"{' '.join(map(str, CIRCUIT_TARGETS[k]))}." for k in CIRCUIT_TARGETS if not circuit.meets(k)]
    evals = [json.loads(l) for l in (path / "training_log.jsonl").read_text().splitlines() if "tokens_seen" in l]
    if evals and "ioi_accuracy" in evals[-1]:
        last = evals[-1]
        missed.append(f"- IOI on the *validation* families at the last evaluation of training: accuracy "
                      f"{last['ioi_accuracy']:.3f}, names never seen in IOI {last['ioi_accuracy_unseen_names']:.3f}; "
                      f"on the test families (above) {report.figures['ioi_accuracy']:.3f} and "
                      f"{report.figures['ioi_accuracy_unseen_names']:.3f}. How well the rule carries over depends on "
                      f"the family: new families are not all alike.")
    missed += _final_limits(final)
    missed.append(_name_group_limit(groups))
    if "ioi_io_top_name" in report.figures:
        missed.append(f"- IOI accuracy only asks whether IO scores above S. Among all the course's names, IO "
                      f"is the model's top-scoring name in {report.figures['ioi_io_top_name']:.3f} of the "
                      f"test-family prompts and {report.figures['ioi_io_top_name_unseen_names']:.3f} with "
                      f"names never seen in IOI: where it is not, the model pushes S down but names someone "
                      f"else.")
    held = {kind: ", ".join(ioi.SPLITS[kind]["test"]) for kind in ioi.KINDS}
    val = {kind: ", ".join(ioi.SPLITS[kind]["validation"]) for kind in ioi.KINDS}
    n_fam = {kind: len(fams) for kind, fams in ioi.KINDS.items()}
    card = f"""# Course GPT-2 — model card

A small GPT-2 (`transformers.GPT2LMHeadModel`) trained by this course on a synthetic
curriculum in which every circuit the course teaches is present and measurable.
Generated by `python -m course.training.card`; the figures are measured on held-out data
by `python -m course.training.evaluate` (saved in `evaluation.json`).

## Architecture

{c.n_layer} layers, {c.n_head} heads, width {c.n_embd}, MLP width {c.n_inner}, context {c.n_positions},
vocabulary {c.vocab_size} (byte-level BPE: every first name one token with a leading space,
digits one token each, `<|endoftext|>` = id 0 as BOS/EOS/padding), tied embeddings, GELU
(tanh approximation), no dropout. {n_params / 1e6:.2f} M parameters, float32 safetensors.

## Corpus (`course.data`)

Documents: {REPEAT_SHARE:.0%} of the slots are a random token sequence of 8–40 tokens
repeated 2–4 times; the rest is text: {mix}.

IOI (`course.data.ioi`) is a compositional grammar: {n_fam['intro']} families of intros (how two people
are brought in), {n_fam['remention']} families of re-mentions (how the subject comes back) and
{n_fam['ending']} families of endings that want a person, each family with several surface forms, both
name orders, and optional name-free sentences between intro and re-mention. Whole families are
held out: the **test** families (intros: {held['intro']}; re-mentions: {held['remention']};
endings: {held['ending']}) never appear with two people in training and decide nothing during
training; the **validation** families (intros: {val['intro']}; re-mentions: {val['remention']};
endings: {val['ending']}) choose the checkpoint. Test prompts take all three parts from the test
families. Held-out families' words still reach the model through one-person sentences ("Anna
phoned the doctor on Sunday."), so what is new at test time is the two-person structure.
Free-form IOI sentences (`course.data.ioi_scaffold`, "scaffold" above) take shape away as a cue:
the two people come in through clauses built from generic verbs and nouns in any roles, or
between random words, and the subject comes back after a place or manner phrase, a filler
sentence or random words; they use no test or validation family's wording. (Model v2, trained
without them, reached 0.757 on the test families and 0.675 with unseen names.)
Stories about two or three people (training families only) make names in context a general
skill: every clause that wants a person ends with someone other than its subject.{_recipient_text(corpus_recipe)}{_stand_in_text(corpus_recipe)}
{N_NAMES_NEVER_IN_IOI} names never appear in IOI sentences or stories, and {HELD_OUT_PAIR_FRACTION:.0%} of name pairs
never appear together.{_kept_out_text(corpus_recipe)} Facts: 200
invented countries × capital, language and sport, 4 training phrasings each. Half of the
fact sentences use the opener phrasing ("<opener> the capital of X is"), with openers of
four kinds: {len(OPENER_TEMPLATES)} templates filled with names, places and days ("Anna told Tom that");
word salad of common, corpus and invented words; a whole plain sentence and a connective;
or no opener at all. A fifth phrasing, with an opener never produced in training ("Few
people know that the capital of X is"), is held out; {len(VALIDATION_OPENERS)} other openers never produced
in training ({", ".join(f'"{o}"' for o in VALIDATION_OPENERS[:3])}, …) are the validation set that picks the
shipped checkpoint. Addition: "calc: a + b = c" for a, b in 10..99, 10% of pairs held out (half validation, half test). Blocks of
{BLOCK_LEN} tokens start with BOS and hold whole documents; padding is not in the loss.

## Training (`{_command(train)}`)

AdamW (0.9, 0.98), peak lr {train['lr']}, {train['warmup']} warm-up steps, cosine to
{train['min_lr_ratio']:.0%}, weight decay {train['weight_decay']} on matrices, clip {train['clip']}; batch
{train['batch']}, {train['steps']} steps ({train['steps'] * train['batch'] * BLOCK_LEN / 1e6:.1f} M tokens
including padding), seed {train['seed']}. Wall time {train['wall_seconds'] / 60:.0f} minutes on
{train['device']} with {train['threads']} thread(s) ({train['tokens_per_second']} loss tokens/s), a 2-core
x86-64 machine shared with other jobs. {_selection(train)}{_reproduction_text(path)}

## Measured phenomena (held-out data)

Test data: {SPLIT_DATA['test']}. Validation data (checkpoint choice only): {SPLIT_DATA['validation']}.

| figure | value | target |
| --- | --- | --- |
{rows}

Heads: previous-token head **{report.heads['prev_token_head']}**, induction head **{report.heads['induction_head']}**.

{_ioi_floors_text(report)}

{_final_text(final)}

## The IOI circuit

{_circuit_section(circuit)}
Order of emergence during training (checkpoint evaluations on smaller validation sets):

{chr(10).join(_emergence(path / 'training_log.jsonl'))}

## Limits

{chr(10).join(missed) if missed else "- Every target above is met."}
- The facts are invented; the model knows nothing about the real world.
""" + _attempts()
    out = path / "MODEL_CARD.md"
    out.write_text(card)
    return out


def _ioi_floors_text(report) -> str:
    """The floors of issue 38 (IOI as GPT-2 small does it), each with the test-family figure."""
    rows = "\n".join(f"| {LABELS[k]} | {report.figures[k]:.3f} | {op} {floor} | "
                      f"{'met' if report.meets(k, IOI_FLOORS) else '**not met**'} |"
                      for k, (op, floor) in IOI_FLOORS.items())
    return ("**IOI floors of version 3** (issue 38: the model should *predict* IO, as GPT-2 small does, not only "
            "rank it above S; test families; checkpoints are not chosen on them):\n\n"
            "| figure | value | floor | |\n| --- | --- | --- | --- |\n" + rows)


def _final_text(final: dict) -> str:
    fams = {kind: ", ".join(fs) for kind, fs in ioi.FINAL_KINDS.items()}
    return (f"**Final families** (`python -m course.training.evaluate --final`). The test families have guided "
            f"choices between training runs (see the record of recipes below), so their figures are not an unseen "
            f"estimate. The final families (intros: {fams['intro']}; re-mentions: {fams['remention']}; endings: "
            f"{fams['ending']}) are shapes in no training text, not even one-person sentences, and are measured only "
            f"for a model already chosen to ship: IOI accuracy {final['ioi_accuracy']:.3f} (logit difference "
            f"{final['ioi_logit_diff']:.2f}), with names never in IOI {final['ioi_accuracy_unseen_names']:.3f} "
            f"({final['ioi_logit_diff_unseen_names']:.2f}).")


def _final_limits(final: dict) -> list[str]:
    """A Limits line for each IOI floor the final families miss (they are no target of their own,
    but a figure under a floor on unseen shapes is what a reader must not miss)."""
    out = []
    for name, value in final.items():
        if name not in TARGETS:
            continue
        op, floor = TARGETS[name]
        if not (value >= floor if op == ">=" else value <= floor):
            out.append(f"- On the final families, {LABELS[name].split(',')[0]}"
                       f"{' with names never in IOI' if name.endswith('_unseen_names') else ''} is {value:.3f}, "
                       f"short of the {floor} that the test families are held to.")
    return out


def _name_group_limit(groups: dict[str, tuple[float, float]]) -> str:
    """The IOI accuracy of each name group on the test families (``evaluate --by-name-group test``):
    "names never in IOI" averages over prompts whose two names are *both* kept out, so a group
    where only one of them is can hide behind it."""
    parts = "; ".join(f"{g} {a:.3f} ({d:.2f})" for g, (a, d) in groups.items())
    worst = min(groups, key=lambda g: groups[g][0])
    gap = groups["neither"][0] - groups[worst][0]
    tail = (f"The groups are within {gap:.2f} of each other: who the names are barely matters." if gap <= 0.05 else
            f"With {worst}, accuracy is {gap:.2f} below the IOI names' own: there, which names training put "
            f"in which roles still decides answers the sentence does not.")
    return (f"- IOI on the test families by whether IO and S are names kept out of IOI (accuracy, logit "
            f"difference; `python -m course.training.evaluate --by-name-group test`): {parts}. {tail}")


def _attempts() -> str:
    """The record of training recipes tried (``RECIPE_RECORD.md``, kept by hand: each row is a
    run's measured figures), appended to the card."""
    f = BUNDLED["course-gpt2"] / "RECIPE_RECORD.md"
    return "\n" + f.read_text() if f.exists() else ""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("path", type=Path)
    print(write_card(ap.parse_args(argv).path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
