"""The promise maps: solutions/promises/exNN.md, one table per exercise.

Each row is one promise that the stub's docstring or the notebook's exercise text makes — something
the learner's code must do, return, print (and where), accept, refuse or never do — and the check(s)
that exercise it:

    | # | promise | made in | checks |
    |---|---|---|---|
    | 1 | `stopwatch` returns what `func` returned, first | docstring of `stopwatch` | `measures_durations` |

`#` is the promise's number (wrong answers name it: `promise = 1` in tests/wrong_answers/exNN.toml);
`checks` names check functions of ebookstore/course/checks/exNN.py in backticks, one or more.
"""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from ebookstore.config import PROJECT_ROOT

FOLDER = PROJECT_ROOT / "solutions" / "promises"
_ROW = re.compile(r"^\|\s*(\d+)\s*\|(.*)\|(.*)\|(.*)\|\s*$")
_NAME = re.compile(r"`([A-Za-z_]\w*)`")


@dataclasses.dataclass(frozen=True)
class Promise:
    exercise: str
    number: int
    text: str
    made_in: str
    checks: tuple[str, ...]


def path(exercise: str) -> Path:
    return FOLDER / f"{exercise}.md"


def load(exercise: str) -> list[Promise]:
    """The rows of exercise's map, in order ([] if it has no map yet)."""
    if not path(exercise).is_file():
        return []
    promises = []
    for line in path(exercise).read_text().splitlines():
        match = _ROW.match(line)
        if match:
            number, text, made_in, checks = match.groups()
            promises.append(Promise(exercise, int(number), text.strip(), made_in.strip(),
                                    tuple(_NAME.findall(checks))))
    return promises
