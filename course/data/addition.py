"""Two-digit addition lines: "calc: 36 + 59 = 95".

Operands run from 10 to 99. A fixed tenth of the ordered pairs is held out of
training (chosen by a seeded shuffle) for evaluation.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache

OPERANDS = range(10, 100)
HELD_OUT_FRACTION = 0.1


@dataclass(frozen=True)
class AdditionPrompt:
    a: int
    b: int

    @property
    def text(self) -> str:
        return f"calc: {self.a} + {self.b} ="

    @property
    def answer(self) -> str:
        return f" {self.a + self.b}"

    @property
    def carry(self) -> bool:
        """Whether the ones digits overflow into the tens."""
        return self.a % 10 + self.b % 10 >= 10


@lru_cache(maxsize=None)
def addition_split(seed: int = 99) -> tuple[frozenset, frozenset]:
    """(train pairs, held-out pairs) as sets of (a, b)."""
    pairs = [(a, b) for a in OPERANDS for b in OPERANDS]
    random.Random(seed).shuffle(pairs)
    cut = int(len(pairs) * HELD_OUT_FRACTION)
    return frozenset(pairs[cut:]), frozenset(pairs[:cut])


def addition_line(rng: random.Random) -> str:
    train, _ = addition_split()
    while True:
        a, b = rng.choice(OPERANDS), rng.choice(OPERANDS)
        if (a, b) in train:
            p = AdditionPrompt(a, b)
            return p.text + p.answer


def held_out_addition_prompts(split: str = "test") -> list[AdditionPrompt]:
    """Sums never trained on: half of the held-out pairs choose checkpoints ("validation"),
    the other half is only ever reported ("test")."""
    _, held = addition_split()
    pairs = sorted(held)
    random.Random(100).shuffle(pairs)
    half = pairs[: len(pairs) // 2] if split == "validation" else pairs[len(pairs) // 2:]
    return [AdditionPrompt(a, b) for a, b in sorted(half)]
