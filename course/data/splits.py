"""What is held out of training, decided once from a fixed seed.

- a few names never appear in IOI sentences (they still appear in other text);
- some unordered name pairs never appear together in an IOI sentence;
- some (intro, action) template combinations never appear in training.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from functools import lru_cache

from course.data.ioi import ACTIONS, INTROS

N_NAMES_NEVER_IN_IOI = 8
HELD_OUT_PAIR_FRACTION = 0.1
HELD_OUT_TEMPLATE_FRACTION = 0.15


@dataclass(frozen=True)
class IOISplit:
    ioi_names: tuple[str, ...]              # names used in IOI training sentences
    unseen_names: tuple[str, ...]           # names never in an IOI training sentence
    held_out_pairs: frozenset               # frozenset({a, b}) never together in training
    held_out_templates: frozenset           # (intro, action) never in training

    def trainable(self, a: str, b: str, intro: int, action: int) -> bool:
        return (frozenset((a, b)) not in self.held_out_pairs
                and (intro, action) not in self.held_out_templates)


@lru_cache(maxsize=None)
def ioi_split(names: tuple[str, ...], seed: int = 7) -> IOISplit:
    rng = random.Random(seed)
    shuffled = list(names)
    rng.shuffle(shuffled)
    unseen = tuple(shuffled[:N_NAMES_NEVER_IN_IOI])
    ioi_names = tuple(shuffled[N_NAMES_NEVER_IN_IOI:])
    pairs = [frozenset(p) for p in itertools.combinations(sorted(ioi_names), 2)]
    held_pairs = frozenset(rng.sample(pairs, int(len(pairs) * HELD_OUT_PAIR_FRACTION)))
    grid = list(itertools.product(range(len(INTROS)), range(len(ACTIONS))))
    held_templates = frozenset(rng.sample(grid, int(len(grid) * HELD_OUT_TEMPLATE_FRACTION)))
    return IOISplit(ioi_names, unseen, held_pairs, held_templates)
