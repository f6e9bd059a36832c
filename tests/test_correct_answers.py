"""The graders accept correct answers written differently from solutions/.

Every entry of tests/correct_answers/exNN.toml (see its __init__) is graded by every check of its
exercise, through the real grader, as a submission: each check must pass. A failure here means a
check judges how the reference solution happens to work, not what the exercise promised.
"""
from collections import Counter

import pytest

from ebookstore.course import grading
from tests.correct_answers import load
from tests.wrong_answers import grade_source

CATALOGUE = load()


def test_at_least_four_alternatives_per_exercise_each_really_different():
    per_exercise = Counter(entry.exercise for entry in CATALOGUE)
    assert {e: per_exercise[e] for e in grading.EXERCISES if per_exercise[e] < 4} == {}
    assert len({entry.id for entry in CATALOGUE}) == len(CATALOGUE)
    for entry in CATALOGUE:
        assert entry.approach and (entry.edits or entry.whole), entry.id
        source = entry.source()  # raises unless each edit applies exactly once
        assert source.split("\n", 1)[1] != entry.solution(), f"{entry.id} is the solution itself"


@pytest.mark.parametrize("entry", CATALOGUE, ids=lambda entry: entry.id)
def test_every_check_accepts_the_correct_alternative(entry, tmp_path):
    results = grade_source(tmp_path, entry.exercise, entry.source())
    rejected = {name: result.hint for name, result in results.items() if not result.passed}
    assert rejected == {}, f"{entry.id} ({entry.approach}) was rejected"
