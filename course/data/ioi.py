"""Indirect-object identification (IOI): a compositional grammar of two-person sentences.

An IOI sentence introduces two people, mentions one of them again as the subject of
a later clause (S), and ends where that clause wants a person: the answer is the
other one, the indirect object (IO). "Anna phoned Tom on Sunday. That evening Tom
baked a cake for" -> " Anna".

A sentence is built from three independent parts, each drawn from a *family* of
surface forms:

- an **intro** family: how the two people are brought in ("A and B went…",
  "A met B…", "B's friend A…", two sentences, a subordinate clause, …);
- a **re-mention** family: how the subject comes back (a new sentence, a time
  connective, a subordinate clause, name-free filler, a relative clause, …);
- an **ending** family: what the subject does that wants a person (giving to,
  greeting, doing something for, going with, a verb with a person as object, …).

Whole families are held out (see :data:`SPLITS`): the evaluation families never
appear with two people in training and are never used to choose a checkpoint; the
validation families choose the checkpoint. Their words are not hidden from the
model: one-person sentences (:func:`solo_sentence`) use every family's phrases with
a common noun in place of the second person, so what is new at evaluation is the
two-person structure, not the vocabulary.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from course.data.vocabulary import ADJECTIVES, OBJECTS, PLACES

DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
# Stand-ins for the second person in one-person sentences.
NOUN_PEOPLE = ["the doctor", "the teacher", "her mother", "his father", "the children",
               "a neighbour", "the baker", "an old man", "the driver", "the nurse"]

# --- intros: {A} is mentioned first, {B} second. A variant ending in "," is a
# subordinate clause: the subject follows at once ("…, {S} gave").
INTROS: dict[str, list[str]] = {
    "and_sentence": ["{A} and {B} went to the {place}.", "{A} and {B} spent the morning at the {place}.",
                     "{A} and {B} were at the {place}.", "Last week {A} and {B} walked to the {place}."],
    "and_clause": ["When {A} and {B} went to the {place},", "After {A} and {B} arrived at the {place},",
                   "While {A} and {B} were working at the {place},", "As {A} and {B} left the {adj} {place},"],
    "met": ["{A} met {B} at the {place}.", "{A} ran into {B} near the {place}.",
            "{A} bumped into {B} outside the {place}."],
    "talk": ["{A} was talking with {B} in the {place}.", "{A} had a long chat with {B}.",
             "{A} spoke to {B} about the {object}."],
    "with": ["{A} went to the {place} with {B}.", "{A} had lunch with {B} at the {place}.",
             "{A} worked with {B} at the {place}."],
    "wait": ["{A} waited for {B} outside the {place}.", "{A} was looking for {B} in the {place}."],
    "saw": ["{A} saw {B} in the {place}.", "{A} noticed {B} near the {place}.", "{A} spotted {B} at the {place}."],
    "both": ["Both {A} and {B} liked the {place}.", "Neither {A} nor {B} had been to the {place}."],
    "clause_met": ["After {A} met {B} at the {place},", "Once {A} found {B} in the {place},",
                   "When {A} visited {B} at the {place},"],
    "visit": ["{A} visited {B} at the {place}.", "{A} went to see {B} at the {place}.", "{A} stayed with {B} for a week."],
    "phone": ["{A} phoned {B} on {day}.", "{A} called {B} after lunch.", "{A} rang {B} early in the morning."],
    "possessive": ["{A} stayed at {B}'s house.", "{A} borrowed {B}'s {object}.", "{A} found {B}'s {object} in the {place}."],
    "two_sentences": ["{A} was at the {place}. {B} arrived later.", "{A} was reading a book. {B} came in.",
                      "{A} sat in the {place}. Soon {B} joined."],
    "together": ["{A}, together with {B}, walked to the {place}.", "{A}, along with {B}, visited the {place}."],
    "neighbours": ["{A} lived next door to {B}.", "{A} shared a flat with {B}.", "{A} grew up with {B} near the {place}."],
}

# --- re-mentions of the subject. "{S}" is the subject; a variant may bring the
# ending in its base form ("decided to" + "give a ball to") with "{base}".
REMENTIONS: dict[str, list[str]] = {
    "plain": ["{S}"],
    "then": ["Then {S}", "Later, {S}", "Afterwards, {S}", "Soon {S}"],
    "subordinate": ["When the {place} closed, {S}", "Because it was {adj}, {S}", "After the rain stopped, {S}",
                    "Before lunch, {S}"],
    "filler": ["{filler} {S}", "{filler} {filler} {S}", "{filler} {filler} {filler} {S}"],
    "intention": ["{S} decided to {base}", "{S} wanted to {base}", "{S} tried to {base}"],
    "time": ["That evening {S}", "The next day, {S}", "On {day}, {S}", "A week later, {S}"],
    "relative": ["{S}, who was {adj},", "{S}, still {adj},", "{S}, feeling {adj},"],
    "and_verb": ["{S} smiled and", "{S} stood up and", "{S} laughed and"],
}

# --- endings: (past form, base form); the answer follows with a leading space.
ENDINGS: dict[str, list[tuple[str, str]]] = {
    "transfer": [("gave a {object} to", "give a {object} to"), ("handed the {object} to", "hand the {object} to"),
                 ("passed a {object} to", "pass a {object} to"), ("sent a {object} to", "send a {object} to"),
                 ("threw the {object} to", "throw the {object} to"), ("lent a {object} to", "lend a {object} to"),
                 ("sold the {object} to", "sell the {object} to"), ("showed the {object} to", "show the {object} to")],
    "greeting": [("said goodbye to", "say goodbye to"), ("waved at", "wave at"), ("smiled at", "smile at"),
                 ("said hello to", "say hello to"), ("nodded to", "nod to")],
    "person_object": [("hugged", "hug"), ("thanked", "thank"), ("helped", "help"), ("followed", "follow"),
                      ("praised", "praise"), ("called", "call")],
    "from": [("borrowed a {object} from", "borrow a {object} from"), ("got a {object} from", "get a {object} from"),
             ("took the {object} from", "take the {object} from"), ("bought a {object} from", "buy a {object} from")],
    "message": [("wrote a letter to", "write a letter to"), ("sent a message to", "send a message to"),
                ("told a story to", "tell a story to"), ("explained the plan to", "explain the plan to")],
    "benefactive": [("made tea for", "make tea for"), ("baked a cake for", "bake a cake for"),
                    ("bought a {object} for", "buy a {object} for"), ("cooked dinner for", "cook dinner for")],
    "company": [("went home with", "go home with"), ("had lunch with", "have lunch with"),
                ("danced with", "dance with"), ("walked to the {place} with", "walk to the {place} with")],
}

# Name-free sentences that put distance between the intro and the re-mention.
FILLERS = ["The {place} was {adj}.", "It was a {adj} day.", "There was a {object} on the table.",
           "Everyone was {adj} that day.", "The weather was {adj}.", "Nobody said much.",
           "The {object} was old.", "It had been a long week."]

# Whole families held out. "test": the evaluation families, never in a two-person
# sentence in training and never used for a decision during training; "validation":
# the checkpoint-selection families, also never in training.
SPLITS = {
    "intro": {"test": ("phone", "possessive", "two_sentences"), "validation": ("together", "neighbours")},
    "remention": {"test": ("time", "relative"), "validation": ("and_verb",)},
    "ending": {"test": ("benefactive", "company"), "validation": ("message",)},
}
KINDS = {"intro": INTROS, "remention": REMENTIONS, "ending": ENDINGS}

# --- the "final" families: kept apart from everything above and evaluated only for a model
# already chosen to ship (the test families have guided choices between training runs; these
# never have). Their sentence shapes are in no training text: not in the one-person sentences,
# which draw on INTROS, REMENTIONS and ENDINGS only, nor in the free-form ones
# (course.data.ioi_scaffold); their words are words the corpus uses elsewhere. A final prompt
# takes all three parts from here.
FINAL_KINDS: dict[str, dict] = {
    "intro": {
        "passive": ["{A} was helped by {B} at the {place}.", "{A} was called by {B} on {day}.",
                    "{A} was visited by {B} in the {place}."],
        "double_object": ["{A} told {B} a story about the {place}.", "{A} showed {B} the {object}.",
                          "{A} bought {B} a gift last {day}."],
        "order": ["{A} arrived at the {place} after {B}.", "{A} left the {place} after {B}.",
                  "{A} got to the {place} after {B}."],
    },
    "remention": {
        "after_that": ["After that, {S}", "Not long after, {S}", "Soon after that, {S}"],
        "again": ["Once again {S}", "Once more, {S}", "Early in the morning, {S}"],
    },
    "ending": {
        "keeping": [("saved a {object} for", "save a {object} for"), ("fetched the {object} for", "fetch the {object} for"),
                    ("chose a {object} for", "choose a {object} for")],
        "toward": [("waited for", "wait for"), ("ran to", "run to"), ("read a book to", "read a book to"),
                   ("told the news to", "tell the news to")],
    },
}
# Every family by kind, for rendering; training draws only on KINDS (see families()).
_PARTS = {kind: {**KINDS[kind], **FINAL_KINDS[kind]} for kind in KINDS}


def families(kind: str, split: str) -> tuple[str, ...]:
    """The family names of ``kind`` ("intro", "remention", "ending") in ``split``
    ("train", "validation", "test", "final")."""
    held = SPLITS[kind]
    if split == "final":
        return tuple(FINAL_KINDS[kind])
    if split != "train":
        return held[split]
    return tuple(f for f in KINDS[kind] if f not in held["test"] + held["validation"])


@dataclass(frozen=True)
class Template:
    """One sentence shape: a family and a variant index for each part, and its fillers.

    ``fill`` holds the words for {place}, {object}, {adj}, {day} and the filler sentences,
    so rendering a template with different names gives prompts of the same structure.
    """

    intro: tuple[str, int]
    remention: tuple[str, int]
    ending: tuple[str, int]
    fill: tuple[tuple[str, str], ...]
    middle: tuple[str, ...] = ()

    @property
    def families(self) -> tuple[str, str, str]:
        return self.intro[0], self.remention[0], self.ending[0]


@dataclass(frozen=True)
class IOIPrompt:
    """One IOI prompt: ``text`` ends just before the answer; ``io`` is the answer name."""

    text: str
    io: str
    s: str
    template: Template | None = None

    @property
    def answer(self) -> str:
        return " " + self.io

    @property
    def distractor(self) -> str:
        return " " + self.s


def _fill(rng: random.Random) -> dict[str, str]:
    return dict(place=rng.choice(PLACES), object=rng.choice(OBJECTS), adj=rng.choice(ADJECTIVES),
                day=rng.choice(DAYS))


def random_template(rng: random.Random, split: str = "train", middle: bool | None = None) -> Template:
    """A sentence shape whose three families all come from ``split``.

    A clause intro ("When A and B went to the store,") takes its subject at once, so it
    is combined with the plain re-mention, whatever the split (the plain form is not
    held out; it is how a main clause starts). Final-family intros all end in a sentence.
    """
    intro_f = rng.choice(families("intro", split))
    intro_v = rng.randrange(len(_PARTS["intro"][intro_f]))
    if _PARTS["intro"][intro_f][intro_v].endswith(","):
        rem_f = "plain"
    else:
        rem_f = rng.choice(families("remention", split))
    rem_v = rng.randrange(len(_PARTS["remention"][rem_f]))
    end_f = rng.choice(families("ending", split))
    end_v = rng.randrange(len(_PARTS["ending"][end_f]))
    fill = _fill(rng)
    n_fill = _PARTS["remention"][rem_f][rem_v].count("{filler}")
    # Optional name-free sentences between intro and re-mention vary the names' distance.
    if middle is None:
        middle = rng.random() < 0.3
    sentence_intro = not _PARTS["intro"][intro_f][intro_v].endswith(",")
    mid = tuple(rng.choice(FILLERS).format(**fill) for _ in range(rng.randint(1, 2))) if middle and sentence_intro else ()
    fillers = tuple(rng.sample(FILLERS, n_fill))
    fill["filler"] = fillers
    return Template((intro_f, intro_v), (rem_f, rem_v), (end_f, end_v),
                    tuple((k, v) for k, v in fill.items()), mid)


def render(t: Template, io: str, s: str, io_first: bool, s2: str | None = None) -> IOIPrompt:
    """The prompt of shape ``t`` with IO and S; ``io_first``: IO is the first name in the intro.

    ``s2``: another name for the re-mention (the "ABC" corruption: a third person in
    place of the repeated subject, so no name is repeated and IOI has no answer).
    """
    fill = dict(t.fill)
    fillers = list(fill.pop("filler"))
    a, b = (io, s) if io_first else (s, io)
    intro = _PARTS["intro"][t.intro[0]][t.intro[1]].format(A=a, B=b, **fill)
    past, base = (x.format(**fill) for x in _PARTS["ending"][t.ending[0]][t.ending[1]])
    rem = _PARTS["remention"][t.remention[0]][t.remention[1]]
    for _ in range(rem.count("{filler}")):
        rem = rem.replace("{filler}", fillers.pop(0).format(**fill), 1)
    subject = s if s2 is None else s2
    if "{base}" in rem:
        clause = rem.format(S=subject, base=base, **fill)
    else:
        clause = rem.format(S=subject, **fill) + " " + past
    parts = [intro, *t.middle, clause]
    return IOIPrompt(text=" ".join(parts), io=io, s=s, template=t)


def ioi_prompt(rng: random.Random, io: str, s: str, split: str = "train", middle: bool | None = None) -> IOIPrompt:
    """A random prompt from ``split``'s families, with IO and S in a random order."""
    return render(random_template(rng, split, middle), io, s, rng.random() < 0.5)


# --- other text in which people recur ---------------------------------------------------------

def story(rng: random.Random, people: list[str]) -> str:
    """A few sentences about ``people`` (two or three) from the training families.

    Every clause that wants a person ends with someone other than its subject, so the
    IOI rule ("not the subject") holds in stories too; with three people it leaves two
    candidates, which rewards inhibiting the subject over copying a fixed position.
    """
    intro = rng.choice([v for f in families("intro", "train") for v in INTROS[f] if not v.endswith(",")])
    fill = _fill(rng)
    if len(people) == 3:
        text = [f"{people[0]}, {people[1]} and {people[2]} went to the {fill['place']}."]
    else:
        text = [intro.format(A=people[0], B=people[1], **fill)]
    for _ in range(rng.randint(1, 3)):
        subject = rng.choice(people)
        other = rng.choice([p for p in people if p != subject])
        rem = rng.choice([r for f in families("remention", "train") for r in REMENTIONS[f] if "{filler}" not in r])
        end_f = rng.choice(families("ending", "train"))
        past, base = (x.format(**_fill(rng)) for x in rng.choice(ENDINGS[end_f]))
        fill = _fill(rng)
        clause = rem.format(S=subject, base=base, **fill) if "{base}" in rem else rem.format(S=subject, **fill) + " " + past
        text.append(f"{clause} {other}.")
    return " ".join(text)


def _capitalised(text: str) -> str:
    """``text`` with a common-noun person capitalised wherever it starts a sentence."""
    for noun in NOUN_PEOPLE:
        up = noun[0].upper() + noun[1:]
        if text.startswith(noun):
            text = up + text[len(noun):]
        text = text.replace(". " + noun, ". " + up)
    return text


def _noun_and_name(rng: random.Random, name: str, name_wanted: bool) -> str:
    """A training-family sentence with one name and one common-noun person; the ending
    wants the name (``name_wanted``) or the noun, and the other is the repeated subject."""
    noun = rng.choice(NOUN_PEOPLE)
    io, s = (name, noun) if name_wanted else (noun, name)
    p = render(random_template(rng, "train"), io, s, rng.random() < 0.5)
    return _capitalised(p.text + p.answer + ".")


def recipient_sentence(rng: random.Random, name: str) -> str:
    """One named person, who is where a training-family ending wants a person, after a
    common-noun subject: "The doctor met Lisa at the park. Later, the doctor gave a ball to Lisa."

    Only training families: a noun and a name make a two-person structure, which the
    held-out families must not have in training. What the sentence teaches is the
    ending's other half: the person it wants is a name from the context, whichever name
    that is (names kept out of IOI included, see :mod:`course.data.corpus`).
    """
    return _noun_and_name(rng, name, name_wanted=True)


def subject_sentence(rng: random.Random, name: str) -> str:
    """The mirror of :func:`recipient_sentence`: the named person is the repeated subject,
    and the person the ending wants is the common noun of the intro: "Lisa met the doctor
    at the park. Later, Lisa gave a ball to the doctor."

    Training families only, for the same reason. Where recipient sentences teach a name as
    the answer, these teach a name *not* to be the answer when it is the clause's subject,
    the other half of the rule, for every name (those kept out of IOI included).
    """
    return _noun_and_name(rng, name, name_wanted=False)


def solo_sentence(rng: random.Random, name: str) -> str:
    """One person and a common noun in a shape from *any* family, held-out ones too.

    This is how held-out families' words reach the model without their two-person
    structure: "Anna phoned the doctor on Sunday. That evening Anna baked a cake for the children."
    """
    other = rng.choice(NOUN_PEOPLE)
    fill = _fill(rng)
    intro = rng.choice([v for vs in INTROS.values() for v in vs])
    # The second person of the intro becomes a noun; capitalised where it starts a sentence.
    intro = intro.replace("{B}'s", "the " + rng.choice(["doctor", "teacher", "baker"]) + "'s")
    intro = _capitalised(intro.format(A=name, B=other, **fill))
    rem = rng.choice([r for rs in REMENTIONS.values() for r in rs if "{filler}" not in r])
    if intro.endswith(","):
        rem = "{S}"   # a subordinate clause takes its subject at once
    past, base = (x.format(**fill) for x in rng.choice([e for es in ENDINGS.values() for e in es]))
    clause = rem.format(S=name, base=base, **fill) if "{base}" in rem else rem.format(S=name, **fill) + " " + past
    return f"{intro} {clause} {rng.choice(NOUN_PEOPLE)}."
