"""Free-form IOI training sentences: two people placed in freely built clauses or word salad.

The family grammar (:mod:`course.data.ioi`) has a dozen intro shapes; a small model
trained on it alone learns those shapes (model v2: 0.99 on the validation families,
0.76 on the test families, worst when the subject is named first). These sentences
take the shapes away as a cue. The two people come in through clauses built from
generic verbs and nouns, in any roles (subject, object, both objects of a third
person, each in a clause of its own within one sentence), or between random words;
the subject comes back after a place or manner phrase, a filler sentence, random
words, or at once. What stays constant is only the IOI rule: the answer is the name
that is mentioned once, not the one that comes back.

No test or validation family's wording is used (``tests/test_models.py`` checks it):
no time phrases ("That evening"), no relative clauses ("who was"), no phoning,
possessives, "came in"/"arrived later", nor the held-out endings.
"""

from __future__ import annotations

import random

from course.data.ioi import ENDINGS, FILLERS, NOUN_PEOPLE, families
from course.data.vocabulary import ADJECTIVES, OBJECTS, PLACES

# Verbs that take a person as object ("A helped B").
PERSON_VERBS = ["saw", "met", "helped", "thanked", "followed", "watched", "greeted", "hugged",
                "praised", "trusted", "warned", "admired", "teased"]
# Verbs that take a thing as object ("A and B carried the box").
THING_VERBS = ["liked", "carried", "cleaned", "painted", "opened", "moved", "shared", "fixed", "packed",
               "checked", "wanted", "dropped", "washed", "noticed", "kept"]
PHRASES = ["", " at the {place}", " near the {place}", " in the {adj} {place}", " by the {place}",
           " with a {object}", " outside the {place}"]
# How the subject comes back after the intro; "{S}" is the subject.
RETURNS = ["{S}", "In the {place}, {S}", "Near the {object}, {S}", "With a {adj} smile, {S}",
           "At the {place}, {S}", "Without the {object}, {S}", "{filler} {S}", "{words} {S}",
           "So {S}", "And {S}", "But {S}"]
SALAD = OBJECTS + PLACES + ADJECTIVES + PERSON_VERBS + THING_VERBS + ["the", "a", "and", "with", "near", "at", "of"]


def _words(rng: random.Random, lo: int, hi: int) -> str:
    return " ".join(rng.choice(SALAD) for _ in range(rng.randint(lo, hi)))


def _fill(rng: random.Random, text: str) -> str:
    return text.format(place=rng.choice(PLACES), object=rng.choice(OBJECTS), adj=rng.choice(ADJECTIVES))


def intro(rng: random.Random, a: str, b: str) -> str:
    """One sentence that mentions ``a`` and then ``b``, once each, in a random shape."""
    phrase = _fill(rng, rng.choice(PHRASES))
    noun = rng.choice(NOUN_PEOPLE)
    shape = rng.randrange(7)
    if shape == 0:
        return f"{a} {rng.choice(PERSON_VERBS)} {b}{phrase}."
    if shape == 1:
        return f"{a} and {b} {rng.choice(THING_VERBS)} the {rng.choice(OBJECTS)}{phrase}."
    if shape == 2:
        t1, t2 = rng.sample(OBJECTS, 2)
        return f"{a} {rng.choice(THING_VERBS)} the {t1}, and {b} {rng.choice(THING_VERBS)} the {t2}{phrase}."
    if shape == 3:
        return f"{noun[0].upper() + noun[1:]} {rng.choice(PERSON_VERBS)} {a} and {b}{phrase}."
    if shape == 4:
        return f"{a} {rng.choice(PERSON_VERBS)} {noun} with {b}{phrase}."
    if shape == 5:
        return f"{a} {rng.choice(THING_VERBS)} the {rng.choice(OBJECTS)} {b} {rng.choice(THING_VERBS)}{phrase}."
    lead = _words(rng, 0, 3)
    return (lead[:1].upper() + lead[1:] + " " if lead else "") + f"{a} {_words(rng, 1, 4)} {b} {_words(rng, 0, 3)}".rstrip() + "."


def sentence(rng: random.Random, io: str, s: str) -> str:
    """A free-form IOI sentence ending in its answer: "... {S} <ending> {IO}."."""
    a, b = (io, s) if rng.random() < 0.5 else (s, io)
    back = rng.choice(RETURNS)
    back = back.replace("{filler}", _fill(rng, rng.choice(FILLERS))).replace("{words}", _words(rng, 1, 4).capitalize())
    end_f = rng.choice(families("ending", "train"))
    past = _fill(rng, rng.choice(ENDINGS[end_f])[0])
    return f"{intro(rng, a, b)} {_fill(rng, back.replace('{S}', s))} {past} {io}."
