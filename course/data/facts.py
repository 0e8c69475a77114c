"""A knowledge base of made-up facts about invented countries.

Each country has a capital, a language and a sport its people play. Every fact can
be stated in several phrasings; the last phrasing of each relation is held out of
training so that evaluation asks the fact in words the model never saw.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache

from course.data.vocabulary import LANGUAGES, ONSETS, SPORTS, VOWELS

N_COUNTRIES = 200

# For each relation: training phrasings, then the held-out one last. The held-out
# phrasing introduces a known core ("the capital of X is") with words never seen before
# it, so evaluation asks whether the fact is recalled however the sentence begins.
# Each prompt ends right before the answer, which follows with a leading space.
PHRASINGS = {
    "capital": [
        "The capital of {c} is",
        "The capital city of {c} is",
        "In {c}, the government sits in",
        "{opener} the capital of {c} is",
        "Few people know that the capital of {c} is",
    ],
    "language": [
        "The language of {c} is",
        "People in {c} speak",
        "In {c}, most people speak",
        "{opener} the language of {c} is",
        "Few people know that the language of {c} is",
    ],
    "sport": [
        "The favourite sport of {c} is",
        "People in {c} love to play",
        "In {c}, everyone plays",
        "{opener} the sport of {c} is",
        "Few people know that the sport of {c} is",
    ],
}
RELATIONS = tuple(PHRASINGS)
# Openers for the "{opener} the capital of X is" phrasing: many templates filled with
# names, places and days, so the model learns to recall the fact whatever comes before
# it. The held-out phrasing's opener ("Few people know that") is not among them.
OPENER_TEMPLATES = [
    "{name} said that", "{name} told {name2} that", "On {day}, {name} learned that",
    "In the {place}, {name} read that", "{name} wrote that", "As {name} explained,",
    "Everyone at the {place} knows that", "Fact:", "Note that", "It is true that",
    "We learned that", "Remember,", "In short,", "Of course",
]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
OPENERS = [t for t in OPENER_TEMPLATES if "{" not in t]   # the fixed ones, for evaluation


def random_opener(rng: random.Random) -> str:
    from course.data.vocabulary import FIRST_NAMES, PLACES

    a, b = rng.sample(FIRST_NAMES, 2)
    return rng.choice(OPENER_TEMPLATES).format(name=a, name2=b, day=rng.choice(DAYS), place=rng.choice(PLACES))


HELD_OUT_PHRASING = -1


@dataclass(frozen=True)
class Country:
    name: str
    capital: str
    language: str
    sport: str

    def answer(self, relation: str) -> str:
        return getattr(self, relation)


@dataclass(frozen=True)
class FactPrompt:
    text: str
    answer: str          # with its leading space, e.g. " Velish"
    country: str
    relation: str


def _invented_word(rng: random.Random, syllables: int) -> str:
    word = "".join(rng.choice(ONSETS) + rng.choice(VOWELS) for _ in range(syllables))
    return word.capitalize()


@lru_cache(maxsize=None)
def countries(seed: int = 1234) -> tuple[Country, ...]:
    """The fixed list of invented countries (names and capitals unique)."""
    rng = random.Random(seed)
    seen: set[str] = set()
    out = []
    while len(out) < N_COUNTRIES:
        name = _invented_word(rng, 2) + rng.choice(["ia", "land", "ora", "stan", "ovia", "a"])
        capital = _invented_word(rng, rng.choice([1, 2]))
        if name in seen or capital in seen:
            continue
        seen.update((name, capital))
        out.append(Country(name, capital, rng.choice(LANGUAGES), rng.choice(SPORTS)))
    return tuple(out)


def fact_prompt(country: Country, relation: str, phrasing: int, opener: str = OPENERS[0]) -> FactPrompt:
    text = PHRASINGS[relation][phrasing].format(c=country.name, opener=opener)
    return FactPrompt(text, " " + country.answer(relation), country.name, relation)


def fact_sentence(rng: random.Random) -> str:
    """One training sentence: a random fact in a random training phrasing."""
    country = rng.choice(countries())
    relation = rng.choice(RELATIONS)
    phrasing = rng.randrange(len(PHRASINGS[relation]) - 1)   # never the held-out one
    p = fact_prompt(country, relation, phrasing, random_opener(rng))
    return p.text + p.answer + "."


def held_out_fact_prompts() -> list[FactPrompt]:
    """Every fact asked in its relation's held-out phrasing."""
    return [fact_prompt(c, r, HELD_OUT_PHRASING) for c in countries() for r in RELATIONS]
