"""Two kinds of training document that take the IOI task's shortcuts away (issue 38).

In every two-person IOI sentence the repeated name (S2) is also the last name before the
ending, and the held-out families' endings are never followed by a name in training. A model
can then answer by pushing down the most recent name, without finding repetition, and need
not expect a name after "baked a cake for". These documents test those two hypotheses; the
proxy (:mod:`course.training.ioi_proxy`) and the corpus recipes that name them use them.

- :func:`three_person_sentence`: three people, two of whom come back, so that the most recent
  name is repeated but another repeated name is still in the race: only repetition singles
  out the answer.
- :func:`named_ending_sentence`: one named person and a common noun, with *any* ending of the
  grammar (held-out test and validation endings included, the final families' never) followed
  by the name. Not IOI-shaped: no two named people, no repeated subject name; the held-out
  families' two-person *structure* stays held out, their ending words do not.
- :func:`named_among_sentence`: two or three people, each named once in a clause of their
  own, then a common-noun subject, an ending and *one of them*, drawn evenly. Nothing in the
  text says which, so the best guess spreads over the names in context: the pressure that
  makes heads copy names from context (GPT-2 small's name movers), with no repeated name
  and no subject to push down.
"""

from __future__ import annotations

import random

from course.data import ioi
from course.data.splits import ioi_split
from course.data.vocabulary import OBJECTS, PLACES

# Three-person intros (the proxy's own wording; no held-out family's words). A variant ending
# in "," is a subordinate clause, so the subjects follow at once.
THREE_INTROS = [
    "{A}, {B} and {C} went to the {place}.", "When {A}, {B} and {C} went to the {place},",
    "{A} met {B} and {C} at the {place}.", "{A} and {B} saw {C} near the {place}.",
    "After {A}, {B} and {C} arrived at the {place},", "{A} walked to the {place} with {B} and {C}.",
    "{A}, {B} and {C} were at the {place}.",
]
THREE_RETURNS = ["{X} and {Y}", "Then {X} and {Y}", "Later, {X} and {Y}", "Both {X} and {Y}"]


def three_person_sentence(rng: random.Random, people: list[str]) -> str:
    """Three people, two of whom come back as the subject, in either order; the ending wants
    the third. The repeated names sit anywhere in the intro and the most recent name before
    the ending is always one of *two* repeated names, so "suppress the last name" is not
    enough: the model must find repetition. Half the time the two repeated names come
    back together as the subject; half the time one comes back in a sentence of its own
    and the other as the subject, so a repeated name also sits away from the end.
    "When Mary, John and Kate went to the store, Kate and John gave a drink to Mary."
    "Mary, John and Kate were at the park. Kate liked the cup. Then John gave a drink to Mary."
    """
    a, b, c = people
    io = rng.choice(people)
    x, y = rng.sample([p for p in people if p != io], 2)
    fill = dict(place=rng.choice(PLACES), object=rng.choice(OBJECTS))
    end_f = rng.choice(ioi.families("ending", "train"))
    past = rng.choice(ioi.ENDINGS[end_f])[0].format(**fill)
    if rng.random() < 0.5:
        # Both repeated names are the subject, in either order.
        intro = rng.choice(THREE_INTROS).format(A=a, B=b, C=c, **fill)
        back = "{X} and {Y}" if intro.endswith(",") else rng.choice(THREE_RETURNS)
        return f"{intro} {back.format(X=x, Y=y)} {past} {io}."
    # One repeated name comes back in a sentence of its own, the other as the subject: the
    # first is repeated but not recent, so only repetition tells that it is not the answer.
    intro = rng.choice([t for t in THREE_INTROS if not t.endswith(",")]).format(A=a, B=b, C=c, **fill)
    middle = rng.choice(ONE_PERSON_CLAUSES).format(N=y, place=rng.choice(PLACES), object=rng.choice(OBJECTS))
    back = rng.choice(["{X}", "Then {X}", "Later, {X}", "Soon {X}"]).format(X=x)
    return f"{intro} {middle} {back} {past} {io}."


ONE_PERSON_CLAUSES = ["{N} liked the {object}.", "{N} carried the {object} to the {place}.",
                      "{N} stood near the {place}.", "{N} cleaned the {object}.", "{N} waited by the {place}."]
NOUN_RETURNS = ["{noun}", "Then {noun}", "Later, {noun}", "Soon {noun}"]


def _any_ending(rng: random.Random, fill: dict) -> str:
    """One ending of the grammar, any family's but the final ones' (``ioi.ENDINGS``), filled in."""
    return rng.choice([e for es in ioi.ENDINGS.values() for e in es])[0].format(**fill)


def _capitalised(text: str) -> str:
    return text[0].upper() + text[1:]


def named_ending_sentence(rng: random.Random, name: str) -> str:
    """A common-noun subject, any ending of the grammar (test and validation endings
    included, final ones never), then a name: half the time a name from the sentence before
    (copying from context), half the time a name new to the text.
    "Anna liked the lamp. Then the baker cooked dinner for Anna." / "The nurse went home with Tom."
    """
    fill = dict(place=rng.choice(PLACES), object=rng.choice(OBJECTS))
    past = _any_ending(rng, fill)
    noun = rng.choice(ioi.NOUN_PEOPLE)
    if rng.random() < 0.5:
        return f"{_capitalised(noun)} {past} {name}."
    clause = rng.choice(ONE_PERSON_CLAUSES).format(N=name, **fill)
    back = rng.choice(NOUN_RETURNS).format(noun=noun)
    return f"{clause} {_capitalised(back)} {past} {name}."


def named_among_sentence(rng: random.Random, people: list[str]) -> str:
    """Each person named once, in one-person clauses in order; then a common-noun subject, any
    ending of the grammar (final families' never) and one of the people, drawn evenly.
    "Anna liked the lamp. Tom stood near the park. Then the baker cooked dinner for Anna."
    """
    fill = dict(place=rng.choice(PLACES), object=rng.choice(OBJECTS))
    clauses = [rng.choice(ONE_PERSON_CLAUSES).format(N=p, place=rng.choice(PLACES), object=rng.choice(OBJECTS))
               for p in people]
    past = _any_ending(rng, fill)
    back = rng.choice(NOUN_RETURNS).format(noun=rng.choice(ioi.NOUN_PEOPLE))
    return f"{' '.join(clauses)} {_capitalised(back)} {past} {rng.choice(people)}."


def three_people(rng: random.Random, names: tuple[str, ...]) -> list[str]:
    """Three IOI names of which no two form a held-out pair (the name rules of IOI sentences)."""
    split = ioi_split(names)
    while True:
        people = rng.sample(split.ioi_names, 3)
        if all(split.trainable(a, b) for i, a in enumerate(people) for b in people[i + 1:]):
            return people
