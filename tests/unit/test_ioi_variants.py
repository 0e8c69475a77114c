"""The documents that take the IOI shortcuts away (course.data.ioi_variants) say what their
docstrings promise, and the corpus draws them only in recipes that name them."""

from __future__ import annotations

import random
import re

import pytest

from course.data import corpus, ioi
from course.data import ioi_variants as iv
from course.data.splits import ioi_split
from course.data.vocabulary import single_token_names


@pytest.fixture(scope="module")
def names():
    from transformers import AutoTokenizer

    from course.models.loading import BUNDLED

    return single_token_names(AutoTokenizer.from_pretrained(str(BUNDLED["course-gpt2"])))


def _names_in(text: str, people: list[str]) -> list[str]:
    """The people in ``text``, in order of mention."""
    return [w for w in re.findall(r"[A-Z][a-z]+", text) if w in people]


def test_three_person_sentences_repeat_two_names_and_want_the_third(names):
    rng = random.Random(0)
    for _ in range(300):
        people = iv.three_people(rng, names)
        text = iv.three_person_sentence(rng, people)
        mentions = _names_in(text, people)
        answer, context = mentions[-1], mentions[:-1]
        counts = {p: context.count(p) for p in people}
        assert counts[answer] == 1, text                      # IO: named once before the ending
        assert sorted(c for p, c in counts.items() if p != answer) == [2, 2], text
        # The most recent name before the ending repeats: "push down the last name" leaves
        # another repeated name, so only repetition singles out the answer.
        assert counts[context[-1]] == 2, text


def test_three_person_sentences_use_only_ioi_names_on_trainable_pairs(names):
    split, rng = ioi_split(names), random.Random(1)
    for _ in range(200):
        people = iv.three_people(rng, names)
        assert set(people) <= set(split.ioi_names)
        assert all(split.trainable(a, b) for a in people for b in people if a != b)


def test_named_endings_end_on_a_name_and_never_use_a_final_family(names):
    rng = random.Random(2)
    final = [e[0].split("{")[0].strip() for fam in ioi.FINAL_KINDS["ending"].values() for e in fam]
    for _ in range(300):
        name = rng.choice(names)
        text = iv.named_ending_sentence(rng, name)
        assert text.endswith(f" {name}.") and text.count(name) in (1, 2), text
        assert not any(f" {w} {name}." in text for w in final), text


def test_named_among_sentences_name_each_person_once_and_want_one_of_them(names):
    rng = random.Random(4)
    final = [e[0].split("{")[0].strip() for fam in ioi.FINAL_KINDS["ending"].values() for e in fam]
    wanted = set()
    for _ in range(300):
        people = corpus.story_people(rng, names)
        text = iv.named_among_sentence(rng, people)
        mentions = _names_in(text, people)
        answer, context = mentions[-1], mentions[:-1]
        assert context == people, text                # each named once, in order, nothing repeated
        assert answer in people and text.endswith(f" {answer}."), text
        assert not any(f" {w} {answer}." in text for w in final), text
        wanted.add(people.index(answer))
    assert wanted == {0, 1, 2}                        # the first, middle and last person are all wanted


def test_the_corpus_draws_them_only_where_a_recipe_names_them(names):
    rng = random.Random(3)
    docs = [corpus.text_document(rng, names, {"three": 0.4, "named_ending": 0.3, "named_among": 0.3})
            for _ in range(40)]
    # Both kinds end on the person the ending wants: a name, never a common noun.
    assert all(re.search(r" ([A-Z][a-z]+)\.$", d) and re.search(r" ([A-Z][a-z]+)\.$", d)[1] in names for d in docs)
    assert any(len(set(_names_in(d, list(names)))) == 3 for d in docs)   # three-person sentences among them
    shipped = corpus.recipe("stand_ins").mix
    assert not {"three", "named_ending", "named_among"} & set(shipped)
