"""The synthetic curriculum corpus: documents, and their packing into training blocks.

A document is one short text (an IOI sentence, a few facts, a few sums, plain
sentences about people) or a repeated random token sequence. Blocks are
``BLOCK_LEN`` tokens that start with BOS and hold whole documents only, each
followed by BOS/EOS; the rest is padding, which the loss ignores.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Iterator

import torch

from course.data import addition, facts, ioi, ioi_scaffold, ioi_variants, repeats, stand_ins
from course.data.splits import ioi_split
from course.data.plain import plain_sentence

BLOCK_LEN = 128
IGNORE = -100

# Share of the document slots. A quarter are repeated random sequences; the rest is text.
REPEAT_SHARE = 0.25
TEXT_MIX = {"ioi": 0.20, "scaffold": 0.12, "story": 0.10, "solo": 0.05, "likes": 0.05, "facts": 0.21,
            "addition": 0.27}
# Kinds that name people outside any IOI sentence. Drawn uniformly from all names, a name
# kept out of IOI is a fraction as common as an IOI name and never the person an ending
# wants, so a model can learn to prefer IOI names as answers instead of the rule; a recipe's
# ``kept_out_share`` of these documents then name only people kept out of IOI.
ONE_PERSON_KINDS = ("solo", "recipient", "subject", "likes")


@dataclass(frozen=True)
class Recipe:
    """What the training stream is made of: the text kinds' weights (shares of the text documents
    once divided by their sum: a recipe that adds kinds to another keeps the other's weights, so
    that the runs recorded with it reproduce as trained), and the share of
    :data:`ONE_PERSON_KINDS` documents that name only people kept out of IOI."""

    mix: dict
    kept_out_share: float = 0.0


# The recipes of the training stream. "stand_ins" is the shipped model's: the IOI and free-form
# sentences, recipient and subject sentences beside them (:func:`course.data.ioi.recipient_sentence`,
# :func:`course.data.ioi.subject_sentence`) so that every name, kept-out ones included, is trained
# both as the person an ending wants and as the repeated subject it must not name, and some IOI
# sentences whose people are stand-in tokens (:mod:`course.data.stand_ins`), so that the rule pays
# off only as a mechanism for any token. Earlier recipes live in the commits that the record of
# runs names (course/assets/course-gpt2/RECIPE_RECORD.md).
_STAND_INS = {"ioi": 0.17, "scaffold": 0.10, "stand_in": 0.07, "story": 0.10, "solo": 0.04, "recipient": 0.05,
              "subject": 0.05, "likes": 0.02, "facts": 0.20, "addition": 0.20}
RECIPES = {
    "stand_ins": Recipe(_STAND_INS, kept_out_share=0.5),
    # Issue 38, hypothesis 2: every ending of the grammar (held-out test and validation endings
    # included) is also followed by a name, in one-person text (course.data.ioi_variants).
    "named_endings": Recipe({**_STAND_INS, "named_ending": 0.06}, kept_out_share=0.5),
    # Hypotheses 1 and 2: three-person sentences, whose most recent name is repeated but not alone.
    "three_named": Recipe({**_STAND_INS, "three": 0.08, "named_ending": 0.06}, kept_out_share=0.5),
    # Named endings, and text where one of several people named once is wanted (copying names
    # from context, the name movers' job): the proxy's best test-family behaviour (dh32-among-s1).
    "named_among": Recipe({**_STAND_INS, "named_ending": 0.06, "named_among": 0.06}, kept_out_share=0.5),
}


def recipe(name: str) -> Recipe:
    """The recipe called ``name``; a clear error naming the choices otherwise."""
    if name not in RECIPES:
        raise ValueError(f"unknown corpus recipe {name!r}: choose one of {', '.join(RECIPES)}")
    return RECIPES[name]


# The mix the tokenizer is trained on: model v2's, kept so that the vocabulary (and with it
# every token id the chapters use) stays the same when the training mix changes.
TOKENIZER_MIX = {"ioi": 0.30, "story": 0.12, "solo": 0.05, "likes": 0.03, "facts": 0.22, "addition": 0.28}


def ioi_training_sentence(rng: random.Random, names: tuple[str, ...], free_form: bool = False) -> str:
    """An IOI sentence from the training families (or free-form, :mod:`course.data.ioi_scaffold`),
    on a name pair that is not held out."""
    split = ioi_split(names)
    while True:
        io, s = rng.sample(split.ioi_names, 2)
        if not split.trainable(io, s):
            continue
        if free_form:
            return ioi_scaffold.sentence(rng, io, s)
        p = ioi.ioi_prompt(rng, io, s, "train")
        return p.text + p.answer + "."


def story_people(rng: random.Random, names: tuple[str, ...]) -> list[str]:
    """Two or three IOI names of which no two form a held-out pair."""
    split = ioi_split(names)
    while True:
        people = rng.sample(split.ioi_names, rng.choice([2, 2, 3]))
        if all(split.trainable(a, b) for i, a in enumerate(people) for b in people[i + 1:]):
            return people


def text_document(rng: random.Random, names: tuple[str, ...], mix: dict[str, float] = TEXT_MIX,
                  kept_out_share: float = 0.0, stand_in_people: tuple[str, ...] = ()) -> str:
    """One text document of a kind drawn from ``mix``; ``kept_out_share`` of the
    :data:`ONE_PERSON_KINDS` name only people kept out of IOI (0: any name, and nothing
    extra is drawn from ``rng``, so the analysis text stream and the tokenizer's corpus stay as they were).
    ``stand_in_people``: the words a "stand_in" document draws its people from."""
    kind = rng.choices(list(mix), weights=list(mix.values()))[0]
    if kind in ONE_PERSON_KINDS and kept_out_share and rng.random() < kept_out_share:
        names = ioi_split(names).unseen_names
    if kind == "ioi":
        return ioi_training_sentence(rng, names)
    if kind == "scaffold":
        return ioi_training_sentence(rng, names, free_form=True)
    if kind == "stand_in":
        return stand_ins.stand_in_sentence(rng, stand_in_people)
    if kind == "story":
        return ioi.story(rng, story_people(rng, names))
    if kind == "solo":
        return ioi.solo_sentence(rng, rng.choice(names))
    if kind == "recipient":
        return ioi.recipient_sentence(rng, rng.choice(names))
    if kind == "subject":
        return ioi.subject_sentence(rng, rng.choice(names))
    if kind == "likes":
        return " ".join(plain_sentence(rng, names) for _ in range(rng.randint(1, 3)))
    if kind == "three":
        return ioi_variants.three_person_sentence(rng, ioi_variants.three_people(rng, names))
    if kind == "named_ending":
        # Any name, kept-out ones included: one named person, as in solo sentences.
        return ioi_variants.named_ending_sentence(rng, rng.choice(names))
    if kind == "named_among":
        return ioi_variants.named_among_sentence(rng, story_people(rng, names))
    if kind == "facts":
        return " ".join(facts.fact_sentence(rng) for _ in range(rng.randint(1, 3)))
    return "\n".join(addition.addition_line(rng) for _ in range(rng.randint(1, 4)))


def _stand_ins_for(tokenizer, r: Recipe) -> tuple[str, ...]:
    """The stand-in people of ``r``'s stream (none unless it has "stand_in" documents)."""
    return stand_ins.stand_in_people(tokenizer) if "stand_in" in r.mix else ()


def documents(rng: random.Random, tokenizer, names: tuple[str, ...], n: int, r: Recipe,
              people: tuple[str, ...] | None = None) -> list[list[int]]:
    """``n`` tokenized documents (without BOS) of recipe ``r``, text and repeats mixed;
    ``people``: the stand-ins (:func:`course.data.stand_ins.stand_in_people`, found if not given)."""
    vocab = range(1, tokenizer.vocab_size)   # id 0 is <|endoftext|>
    if people is None:
        people = _stand_ins_for(tokenizer, r)
    kinds = [rng.random() < REPEAT_SHARE for _ in range(n)]
    texts = [text_document(rng, names, r.mix, r.kept_out_share, people) for is_rep in kinds if not is_rep]
    encoded = iter(tokenizer(texts, add_special_tokens=False)["input_ids"])
    return [repeats.repeated_tokens(rng, vocab) if is_rep else next(encoded) for is_rep in kinds]


def pack_blocks(docs: Iterator[list[int]], bos: int, n_blocks: int, block_len: int = BLOCK_LEN):
    """Pack documents into ``n_blocks`` blocks; returns (input_ids, labels), both [n_blocks, block_len]."""
    ids = torch.full((n_blocks, block_len), bos, dtype=torch.long)
    labels = torch.full((n_blocks, block_len), IGNORE, dtype=torch.long)
    row, col = 0, 1
    for doc in docs:
        piece = doc[: block_len - 2] + [bos]
        if col + len(piece) > block_len:
            row, col = row + 1, 1
            if row == n_blocks:
                break
        ids[row, col:col + len(piece)] = torch.tensor(piece)
        # labels[i] is the token at i (HF shifts inside the loss); BOS at 0 is context only.
        labels[row, col:col + len(piece)] = torch.tensor(piece)
        col += len(piece)
    return ids, labels


def training_chunk(tokenizer, names: tuple[str, ...], seed: int, chunk: int, n_blocks: int,
                   recipe_name: str = "stand_ins"):
    """Chunk ``chunk`` of the training stream of recipe ``recipe_name`` (:data:`RECIPES`);
    the same arguments always give the same blocks."""
    r = recipe(recipe_name)
    rng = random.Random(seed * 1_000_003 + chunk)
    people = _stand_ins_for(tokenizer, r)   # once per chunk, not per batch of documents

    def stream():
        while True:
            yield from documents(rng, tokenizer, names, 256, r, people)

    return pack_blocks(stream(), tokenizer.bos_token_id, n_blocks)
