"""The checks of every exercise: CHECKS["ex04"] is the list grading.run_exercise runs.

A check is a function of a grading.Context that raises grading.Fail(hint) when
the learner's code is not there yet. Its docstring's first line is its name.
"""
from . import ex01, ex02, ex03, ex04, ex05, ex06, ex07, ex08, ex09, ex10, ex11, ex12

CHECKS = {
    "ex01": ex01.CHECKS,
    "ex02": ex02.CHECKS,
    "ex03": ex03.CHECKS,
    "ex04": ex04.CHECKS,
    "ex05": ex05.CHECKS,
    "ex06": ex06.CHECKS,
    "ex07": ex07.CHECKS,
    "ex08": ex08.CHECKS,
    "ex09": ex09.CHECKS,
    "ex10": ex10.CHECKS,
    "ex11": ex11.CHECKS,
    "ex12": ex12.CHECKS,
}
