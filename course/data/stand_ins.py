"""IOI sentences whose two people are stand-in tokens: words that are no one's name.

"After Velish and Stukri went to the store, Stukri gave a ball to" -> " Velish". The
rule ("the person mentioned once, not the repeated subject") does not care who the
people are; a model that has only ever seen it with the IOI names can learn it as
knowledge about those names, and then fails on names it never saw in IOI (recipe runs
v11-v16 in ``course/assets/course-gpt2/RECIPE_RECORD.md``). With stand-ins drawn from hundreds of
other tokens, only a mechanism that works on *any* token (find the repeated one, copy
the other) pays off. No first name is ever a stand-in, so the names kept out of IOI
stay out of every IOI sentence.

Stand-ins are one-token words with a leading space that are not first names and not
words of the IOI grammar (its families, fillers, places and things), so a sentence's
shape still reads as the training family it came from.
"""

from __future__ import annotations

import random
import re

from course.data import ioi, ioi_scaffold
from course.data.vocabulary import FIRST_NAMES, OBJECTS, PLACES

MIN_LETTERS = 3


def _grammar_words() -> set[str]:
    """Every word of the IOI grammar: all families (held-out and final ones too), fillers,
    common-noun people, days, places and things."""
    texts = [v for kinds in (ioi.KINDS, ioi.FINAL_KINDS) for parts in kinds.values()
             for variants in parts.values() for v in variants]
    flat = [x for t in texts for x in (t if isinstance(t, tuple) else (t,))]
    flat += ioi.FILLERS + ioi.NOUN_PEOPLE + ioi.DAYS + OBJECTS + PLACES + ioi_scaffold.SALAD
    return {w.lower() for t in flat for w in re.findall(r"[A-Za-z]+", re.sub(r"\{[^}]*\}", " ", t))}


def stand_in_people(tokenizer) -> tuple[str, ...]:
    """The words that may stand in for people, sorted: alphabetic, at least
    :data:`MIN_LETTERS` letters, one token with a leading space (the form they take after
    the first word), never a first name nor a word of the IOI grammar."""
    banned = _grammar_words() | {n.lower() for n in FIRST_NAMES}
    words = sorted(tok[1:] for tok in tokenizer.get_vocab()
                   if tok.startswith("Ġ") and tok[1:].isalpha() and len(tok) > MIN_LETTERS
                   and tok[1:].lower() not in banned)
    ids = tokenizer([" " + w for w in words], add_special_tokens=False)["input_ids"]
    return tuple(w for w, i in zip(words, ids) if len(i) == 1)


def stand_in_sentence(rng: random.Random, people: tuple[str, ...]) -> str:
    """A training IOI sentence (family grammar or free-form, half each) ending in its
    answer, with two distinct stand-ins from ``people`` as IO and S."""
    io, s = rng.sample(people, 2)
    if rng.random() < 0.5:
        return ioi_scaffold.sentence(rng, io, s)
    p = ioi.ioi_prompt(rng, io, s, "train")
    return p.text + p.answer + "."
