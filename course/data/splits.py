"""Which names are held out of the IOI sentences, decided once from a fixed seed.

- a few names never appear in IOI sentences or stories (they still appear in other text);
- some unordered name pairs never appear together in an IOI sentence.

Which *sentence families* are held out is part of the grammar: :data:`course.data.ioi.SPLITS`.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from functools import lru_cache

N_NAMES_NEVER_IN_IOI = 8
HELD_OUT_PAIR_FRACTION = 0.1


@dataclass(frozen=True)
class IOISplit:
    ioi_names: tuple[str, ...]              # names used in IOI training sentences
    unseen_names: tuple[str, ...]           # names never in an IOI training sentence
    held_out_pairs: frozenset               # frozenset({a, b}) never together in training

    def trainable(self, a: str, b: str) -> bool:
        return frozenset((a, b)) not in self.held_out_pairs


@lru_cache(maxsize=None)
def ioi_split(names: tuple[str, ...], seed: int = 7) -> IOISplit:
    rng = random.Random(seed)
    shuffled = list(names)
    rng.shuffle(shuffled)
    unseen = tuple(shuffled[:N_NAMES_NEVER_IN_IOI])
    ioi_names = tuple(shuffled[N_NAMES_NEVER_IN_IOI:])
    pairs = [frozenset(p) for p in itertools.combinations(sorted(ioi_names), 2)]
    held_pairs = frozenset(rng.sample(pairs, int(len(pairs) * HELD_OUT_PAIR_FRACTION)))
    return IOISplit(ioi_names, unseen, held_pairs)
