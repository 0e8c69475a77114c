"""Indirect-object identification (IOI) sentences.

An IOI sentence introduces two people, then repeats one of them (the subject, S)
as the giver; the model should complete it with the other one (the indirect
object, IO): "When Mary and John went to the store, John gave a drink to" -> " Mary".

A template is a pair (intro clause, action clause). Some pairs are held out of
training (see :mod:`course.data.splits`) so that evaluation sees combinations the
model never read.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from course.data.vocabulary import ADJECTIVES, OBJECTS, PLACES

# {A} and {B} are the two names in the order they appear; {place}, {adj} fill in.
INTROS = [
    "When {A} and {B} went to the {place},",
    "After {A} and {B} arrived at the {place},",
    "While {A} and {B} were working at the {place},",
    "Then, {A} and {B} had a long day at the {place}.",
    "{A} and {B} went to the {place} together.",
    "Friends {A} and {B} found a {adj} {place}.",
    "When {A} and {B} got a {object2} at the {place},",
    "After the lunch, {A} and {B} went to the {place}.",
    "Yesterday {A} and {B} walked to the {place}.",
    "Once {A} and {B} were at the {place},",
    "As {A} and {B} left the {adj} {place},",
    "{A} and {B} spent the morning at the {place}.",
]

# {S} is the repeated name (the giver).
ACTIONS = [
    "{S} gave a {object} to",
    "{S} handed the {object} to",
    "{S} passed a {object} to",
    "{S} threw the {object} to",
    "{S} sent a {object} to",
    "{S} showed the {object} to",
    "{S} offered a {object} to",
    "{S} brought the {object} to",
    "{S} lent a {object} to",
    "{S} sold the {object} to",
]

# Optional sentences between intro and action; they name nobody, so the answer is
# never given away by how often a name appears beyond the intro and the action.
MIDDLES = [
    "The {place} was {adj}.",
    "It was a {adj} day.",
    "There was a {object2} on the table.",
    "Everyone was {adj} that day.",
    "The weather was {adj}.",
]


@dataclass(frozen=True)
class IOIPrompt:
    """One IOI prompt: ``text`` ends just before the answer; ``io`` is the answer name."""

    text: str
    io: str
    s: str
    intro: int
    action: int

    @property
    def answer(self) -> str:
        return " " + self.io

    @property
    def distractor(self) -> str:
        return " " + self.s


def ioi_prompt(rng: random.Random, io: str, s: str, intro: int, action: int, middle: bool | None = None) -> IOIPrompt:
    """Build one prompt with IO and S in a random order in the intro."""
    a, b = (io, s) if rng.random() < 0.5 else (s, io)
    fill = dict(
        place=rng.choice(PLACES), adj=rng.choice(ADJECTIVES),
        object=rng.choice(OBJECTS), object2=rng.choice(OBJECTS),
    )
    parts = [INTROS[intro].format(A=a, B=b, **fill)]
    if middle is None:
        middle = rng.random() < 0.3
    if middle:
        parts.append(rng.choice(MIDDLES).format(**fill))
    clause = ACTIONS[action].format(S=s, **fill)
    # After a full stop the action starts a sentence; after a comma it continues one.
    parts.append(clause)
    return IOIPrompt(text=" ".join(parts), io=io, s=s, intro=intro, action=action)
