"""Every promise an exercise makes is exercised by a check, and every check keeps a promise.

The maps are solutions/promises/exNN.md (see tests/promise_maps.py); the tutor's guide links them.
Each promise also has at least one wrong answer in the catalogue (tests/wrong_answers/exNN.toml,
`promise = N`) that breaks it, named for a check the map gives that promise: test_wrong_answers.py
proves that check rejects it.
"""
import pytest

from ebookstore.course import grading
from tests import promise_maps
from tests.wrong_answers import load as load_wrong_answers

WRONG = load_wrong_answers()


@pytest.mark.parametrize("exercise", list(grading.EXERCISES))
def test_the_map_names_every_check_and_only_checks_that_exist(exercise):
    promises = promise_maps.load(exercise)
    assert promises, f"no promise map: {promise_maps.path(exercise)}"
    numbers = [p.number for p in promises]
    assert numbers == list(range(1, len(promises) + 1)), f"promises numbered 1, 2, 3 … in order: {numbers}"
    checks = {check.__name__ for check in grading.CHECKS[exercise]}
    named = {name for p in promises for name in p.checks}
    assert all(p.checks for p in promises), [p.number for p in promises if not p.checks]
    assert named - checks == set(), f"the map names checks that do not exist: {sorted(named - checks)}"
    assert checks - named == set(), f"checks that no promise names: {sorted(checks - named)}"


@pytest.mark.parametrize("exercise", list(grading.EXERCISES))
def test_every_promise_has_a_wrong_answer_caught_by_its_own_check(exercise):
    promises = {p.number: p for p in promise_maps.load(exercise)}
    entries = [e for e in WRONG if e.exercise == exercise]
    unmapped = [e.id for e in entries if e.promise not in promises]
    assert unmapped == [], f"wrong answers that name no promise of the map (promise = N): {unmapped}"
    misfiled = [e.id for e in entries if e.check not in promises[e.promise].checks]
    assert misfiled == [], f"wrong answers whose check is not one the map gives their promise: {misfiled}"
    broken = {e.promise for e in entries}
    assert sorted(set(promises) - broken) == [], "promises that no wrong answer breaks"


def test_the_tutors_guide_links_every_map():
    guide = (grading.PROJECT_ROOT / "solutions" / "README.md").read_text()
    missing = [e for e in grading.EXERCISES if f"promises/{e}.md" not in guide]
    assert missing == [], f"solutions/README.md does not link the promise maps of {missing}"
