"""Model-free unit tests of how a check describes a wrong tensor: each relation on a hand-made
mistake, no false relation on unrelated values, and the largest difference reported where it is."""

from __future__ import annotations

import pytest
import torch

from course.checks.core import Case, Exercise, check, compare
from course.checks.relations import describe_relation

G = torch.Generator().manual_seed(0)
W = torch.randn(4, 5, 5, generator=G)
X = torch.randn(3, 10, generator=G)


def _edit(x, index, value):
    out = x.clone()
    out[index] = value
    return out


@pytest.mark.parametrize("got, want, words", [
    (-W, W, "opposite sign"),
    (W.transpose(-1, -2), W, "transposed"),
    (W * 5, W, "5 is the size of dimensions 1 and 2: a sum over it where a mean belongs"),
    (W / 4, W, "one over the size of dimension 0: a mean over it where a sum belongs"),
    (W / 16 ** 0.5, W, "1/√16"),
    (W * 3.7, W, "3.7 × the expected"),
    (W + 0.3, W, "+0.3: a constant shift"),
    (W - W.mean(-1, keepdim=True), W, "the difference is the same all along the last dimension: a bias vector"),
    (W.log_softmax(-1), W, "log-probabilities where logits belong"),
    (W / W.norm(dim=-1, keepdim=True), W, "along the last dimension each slice is the expected one times its own factor"),
    (torch.roll(X, 1, 1), X, "shifted by one along the last dimension"),
    (X.flatten()[torch.randperm(30, generator=G)].reshape(3, 10), X, "the right values in another arrangement"),
    (_edit(X, (slice(None), 0), 7.0), X, "every difference is at index 0 (the first) of the last dimension"),
    (_edit(X, (1, 3), 5.0), X, "every difference is at index 1 of dimension 0"),
])
def test_each_relation_is_named(got, want, words):
    assert words in describe_relation(got, want)


@pytest.mark.parametrize("got, want", [
    (torch.randn(3, 10, generator=G), X),             # unrelated values
    (X.clone(), X),                                   # equal: nothing to describe
    (X[:2], X),                                       # other shape: compare() says so
    (torch.tensor(2.0), torch.tensor(1.0)),           # one number: only a flipped sign is told
    (X.long(), X.long()),                             # not floating point
    (_edit(X, (0, 0), float("nan")), X),              # NaN: compare() says so
])
def test_no_relation_is_claimed_where_none_holds(got, want):
    assert describe_relation(got, want) is None


def test_compare_reports_the_largest_difference_and_where():
    want = torch.zeros(3, 4)
    got = _edit(_edit(want, (0, 0), 1e-3), (2, 1), 5.0)
    msg = compare(got, want, atol=1e-5, rtol=1e-5)
    assert "2 of 12 entries" in msg and "largest difference is at [2, 1]: you gave 5, expected 0" in msg


def _exercise(wrong_causes=()):
    def cases(model, hidden):
        return [Case("a 3x10 input", (X,))]
    ex = Exercise("no_chapter", "double", cases, causes=list(wrong_causes))
    ex.reference = lambda: (lambda x: 2 * x)
    return ex


def test_a_check_names_the_relation_when_no_listed_mistake_matches():
    result = check(_exercise(), lambda x: -2 * x, quiet=True, model=object())
    assert not result.passed and "Likely cause: every entry has the opposite sign" in result.message


def test_a_listed_mistake_comes_before_the_relation():
    ex = _exercise([(lambda x: -2 * x, "you negated it on purpose.")])
    result = check(ex, lambda x: -2 * x, quiet=True, model=object())
    assert "Likely cause: you negated it on purpose." in result.message and "opposite sign" not in result.message


def test_a_right_answer_still_passes():
    assert check(_exercise(), lambda x: x + x, quiet=True, model=object()).passed


def test_a_single_number_with_the_opposite_sign_is_named():
    assert "opposite sign" in describe_relation(torch.tensor(-2.5), torch.tensor(2.5))


def test_a_float_answer_with_the_opposite_sign_is_named_by_the_check():
    def cases(model, hidden):
        return [Case("a number", (3.0,))]
    ex = Exercise("no_chapter", "half", cases)
    ex.reference = lambda: (lambda x: x / 2)
    result = check(ex, lambda x: -x / 2, quiet=True, model=object())
    assert "Likely cause: the opposite sign" in result.message


def test_an_outer_product_answer_is_not_called_a_normalisation():
    a, b = torch.randn(5, generator=G), torch.randn(4, generator=G)
    want = torch.outer(a, b)
    got = torch.outer(a * torch.linspace(1, 3, 5), b)              # another rank-one answer
    assert describe_relation(got, want) is None or "normalisation" not in describe_relation(got, want)


def test_a_function_that_changes_its_input_in_place_fails_and_says_so():
    def cases(model, hidden):
        return [Case("a 3x10 input", (X.clone(),))]
    ex = Exercise("no_chapter", "centred", cases)
    ex.reference = lambda: (lambda x: x - x.mean(0))

    def in_place(x):
        x -= x.mean(0)
        return x
    result = check(ex, in_place, quiet=True, model=object())
    assert not result.passed and "changed its input in place" in result.message
    assert check(ex, lambda x: x - x.mean(0), quiet=True, model=object()).passed


def test_an_input_holding_nan_is_not_mistaken_for_a_changed_one():
    x = _edit(X, (0, 0), float("nan"))

    def cases(model, hidden):
        return [Case("an input with a NaN", (x,))]
    ex = Exercise("no_chapter", "doubled", cases)
    ex.reference = lambda: (lambda t: (2 * t).nan_to_num(0.0))
    result = check(ex, lambda t: (t + t).nan_to_num(0.0), quiet=True, model=object())
    assert result.passed, result.message
