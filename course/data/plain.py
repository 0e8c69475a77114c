"""Plain sentences about people: text with names in it that is no IOI sentence."""

from __future__ import annotations

import random
from typing import Sequence

from course.data.vocabulary import ADJECTIVES, OBJECTS, PLACES, VERBS_PAST


def plain_sentence(rng: random.Random, names: Sequence[str]) -> str:
    a, b = rng.sample(list(names), 2)
    return rng.choice([
        f"{a} likes the {rng.choice(OBJECTS)}.",
        f"{a} {rng.choice(VERBS_PAST)} {b} at the {rng.choice(PLACES)}.",
        f"{a} has a {rng.choice(ADJECTIVES)} {rng.choice(OBJECTS)}.",
        f"The {rng.choice(OBJECTS)} belongs to {a}.",
        f"{a} and {b} like the {rng.choice(PLACES)}.",
    ])
