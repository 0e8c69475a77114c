"""What every chapter's checks must do, as tests a chapter's test module takes over:

    from tests.check_contract import contract_tests
    test_reference_passes_stub_does_not, test_a_wrong_answer_fails, test_known_mistakes_are_diagnosed = \
        contract_tests(check, ref)

the reference passes (visible and hidden inputs), a stub says "not implemented", a wrong
answer fails with the exercise's name, and every listed mistake is diagnosed in words.
"""

from __future__ import annotations

import pytest


def contract_tests(check, ref):
    names = list(check.EXERCISES)
    causes = [(n, i) for n, ex in check.EXERCISES.items() for i in range(len(ex.causes))]

    @pytest.mark.parametrize("name", names)
    def test_reference_passes_stub_does_not(name):
        assert getattr(check, name)(getattr(ref, name), quiet=True).passed
        assert getattr(check, name)(getattr(ref, name), hidden=True, quiet=True).passed

        def stub(*a, **k):
            raise NotImplementedError
        assert getattr(check, name)(stub, quiet=True).status == "not implemented"

    @pytest.mark.parametrize("name", names)
    def test_a_wrong_answer_fails(name):
        def wrong(*args, **kwargs):
            out = getattr(ref, name)(*args, **kwargs)
            return tuple(o * 1.5 + 0.5 for o in out) if isinstance(out, tuple) else out * 1.5 + 0.5
        result = getattr(check, name)(wrong, quiet=True)
        assert result.status == "fail" and result.message.startswith(f"✗ {name}")

    @pytest.mark.parametrize("name, index", causes)
    def test_known_mistakes_are_diagnosed(name, index):
        wrong, words = check.EXERCISES[name].causes[index]
        result = getattr(check, name)(wrong, quiet=True)
        assert result.status == "fail" and f"Likely cause: {words}" in result.message

    return test_reference_passes_stub_does_not, test_a_wrong_answer_fails, test_known_mistakes_are_diagnosed


def shipped_values_test(check, ref):
    """A classroom release has no reference: the checks fall back to the shipped expected
    values, and still pass the reference's answers and fail the first listed mistake."""

    @pytest.mark.parametrize("name", list(check.EXERCISES))
    def test_checks_fall_back_to_the_shipped_values(monkeypatch, name):
        from course.checks.core import Exercise

        monkeypatch.setattr(Exercise, "reference", lambda self: None)      # no solutions installed
        assert getattr(check, name)(getattr(ref, name), quiet=True).passed
        assert not getattr(check, name)(check.EXERCISES[name].causes[0][0], quiet=True).passed

    return test_checks_fall_back_to_the_shipped_values
