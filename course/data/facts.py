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
# Openers for the "{opener} the capital of X is" phrasing. The model must recall a fact
# whatever comes before its core, so openers come from four families: templates filled
# with names, places and days; word salad (common words, corpus words and invented
# words, which tokenize into odd pieces the model must not copy); a whole plain
# sentence; or nothing at all. Neither the held-out phrasing's opener ("Few people know
# that") nor the validation openers below can be produced: their words are kept out.
OPENER_TEMPLATES = [
    "{name} said that", "{name} told {name2} that", "On {day}, {name} learned that",
    "In the {place}, {name} read that", "{name} wrote that", "As {name} explained,",
    "Everyone at the {place} knows that", "Fact:", "Note that", "It is true that",
    "We learned that", "Remember,", "In short,", "Of course",
]
FILLER_WORDS = [
    "the", "a", "and", "then", "so", "but", "today", "later", "again", "really", "also",
    "here", "there", "we", "they", "she", "he", "it", "our", "their", "teacher", "doctor",
    "child", "man", "woman", "city", "town", "news", "radio", "paper", "story", "lesson",
    "class", "guide", "report", "told", "wrote", "read", "learned", "thinks", "believes",
    "found", "once", "now", "still", "maybe", "surely", "indeed", "first", "last",
    "morning", "evening", "night", "week", "year", "letter", "note", "sign",
    "in", "on", "at", "by", "with", "from", "as", "that", "this", "is", "was", "were",
]
CONNECTIVES = ["So", "And", "Also,", "Then", "Now", "Still,", "By the way,"]
# Openers never used in training, to choose between checkpoints without touching the
# held-out phrasing (see course.training.train).
VALIDATION_OPENERS = [
    "Many say that", "Yesterday we heard that", "My friend says", "Everybody knows that",
    "According to the old map,", "Believe it or not,",
]
_KEPT_OUT = {"few", "people", "know", "many", "say", "says", "yesterday", "heard", "friend",
             "everybody", "according", "believe", "not"}
assert not _KEPT_OUT & {w.lower() for w in FILLER_WORDS}
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
OPENERS = [t for t in OPENER_TEMPLATES if "{" not in t]   # the fixed ones, for evaluation


def _word_salad(rng: random.Random) -> str:
    from course.data.vocabulary import FIRST_NAMES, OBJECTS, PLACES

    pools = [FILLER_WORDS] * 4 + [FIRST_NAMES, OBJECTS, PLACES]
    words = []
    for _ in range(rng.randint(1, 7)):
        if rng.random() < 0.15:
            word = _invented_word(rng, rng.randint(1, 3))
            if word not in _answers_and_countries():   # never a fact's own words
                words.append(word)
        else:
            words.append(rng.choice(rng.choice(pools)))
    words = words or ["the"]
    words[0] = words[0][:1].upper() + words[0][1:]
    return " ".join(words) + rng.choice(["", "", ",", ":", " that"])


def random_opener(rng: random.Random) -> str:
    """An opener for the "{opener} the <relation> of X is" phrasing (may be empty)."""
    from course.data.plain import plain_sentence
    from course.data.vocabulary import FIRST_NAMES, PLACES

    family = rng.random()
    if family < 0.4:
        a, b = rng.sample(FIRST_NAMES, 2)
        return rng.choice(OPENER_TEMPLATES).format(name=a, name2=b, day=rng.choice(DAYS), place=rng.choice(PLACES))
    if family < 0.75:
        return _word_salad(rng)
    if family < 0.9:
        return plain_sentence(rng, FIRST_NAMES) + " " + rng.choice(CONNECTIVES)
    return ""


HELD_OUT_PHRASING = -1
OPENER_PHRASING = 3   # "{opener} the <relation> of {c} is"
assert all("{opener}" in p[OPENER_PHRASING] for p in PHRASINGS.values())


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
    text = PHRASINGS[relation][phrasing].format(c=country.name, opener=opener).strip()
    return FactPrompt(text, " " + country.answer(relation), country.name, relation)


def fact_sentence(rng: random.Random) -> str:
    """One training sentence: a random fact in a random training phrasing."""
    country = rng.choice(countries())
    relation = rng.choice(RELATIONS)
    # Never the held-out phrasing; the opener phrasing half the time, since it teaches
    # recall independent of what precedes the core.
    phrasing = OPENER_PHRASING if rng.random() < 0.5 else rng.randrange(OPENER_PHRASING)
    p = fact_prompt(country, relation, phrasing, random_opener(rng))
    return p.text + p.answer + "."


def validation_fact_prompts() -> list[FactPrompt]:
    """Every fact after each validation opener (training phrasing core, unseen opener)."""
    return [fact_prompt(c, r, OPENER_PHRASING, o) for o in VALIDATION_OPENERS
            for c in countries() for r in RELATIONS]


@lru_cache(maxsize=None)
def _answers_and_countries() -> frozenset[str]:
    return frozenset(w for c in countries() for w in (c.name, c.capital))


def held_out_fact_prompts() -> list[FactPrompt]:
    """Every fact asked in its relation's held-out phrasing."""
    return [fact_prompt(c, r, HELD_OUT_PHRASING) for c in countries() for r in RELATIONS]
