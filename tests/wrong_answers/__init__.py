"""The catalogue of wrong answers: each is a solution with one mistake a learner really makes.

`exNN.toml` lists the wrong answers to exercise NN. Each entry names the mistake
(`mistake`, in a tutor's words), the check whose name promises to catch it
(`check`, the check function's name), the words its hint must contain (`hint`,
any case: the hint must name the concept), and how the solution becomes the
wrong answer: `find` (text that occurs exactly once in solutions/exNN_….py) and
`replace`, or several such pairs under `[[wrong.edits]]`; and the promise it breaks
(`promise`, its number in the exercise's map, solutions/promises/exNN.md). The graded source
starts with a comment saying what is wrong, so a tutor reading one sees it first.
"""
from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path

from ebookstore.config import PROJECT_ROOT
from ebookstore.course import grading, proctor

HERE = Path(__file__).parent


@dataclasses.dataclass(frozen=True)
class WrongAnswer:
    exercise: str
    name: str
    mistake: str
    check: str
    hint: tuple[str, ...]
    edits: tuple[tuple[str, str], ...]
    promise: int | None = None

    @property
    def id(self) -> str:
        return f"{self.exercise}-{self.name}"

    def solution(self) -> str:
        return (PROJECT_ROOT / "solutions" / f"{grading.EXERCISES[self.exercise]}.py").read_text()

    def source(self) -> str:
        """The solution with this entry's mistake, under a first line that says what is wrong."""
        text = self.solution()
        for find, replace in self.edits:
            if text.count(find) != 1:
                raise ValueError(f"{self.id}: the text to replace occurs {text.count(find)} times, not once: {find!r}")
            text = text.replace(find, replace)
        return f"# WRONG ({self.check}): {self.mistake}\n{text}"


def load() -> list[WrongAnswer]:
    entries = []
    for path in sorted(HERE.glob("ex*.toml")):
        for entry in tomllib.loads(path.read_text())["wrong"]:
            edits = [(e["find"], e["replace"]) for e in entry.get("edits", [])]
            if "find" in entry:
                edits.insert(0, (entry["find"], entry["replace"]))
            entries.append(WrongAnswer(path.stem, entry["name"], entry["mistake"], entry["check"],
                                       tuple(entry["hint"]), tuple(edits), entry.get("promise")))
    return entries


# A check's time limit here: a learner's is CHECK_TIMEOUT (15 s), but the tests share the machine with others.
TEST_CHECK_TIMEOUT = 60.0


def grade_source(tmp_path, exercise, source, only=None) -> dict:
    """Grade `source` as a learner's exercise file (a submission folder), as `ebookstore grade` does: through
    the proctor, each check in a child of its own (forked by its fork server).

    `only`: the names of the check functions to run (default: all). Returns {check function name: Result}.
    """
    folder = tmp_path / "submission"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{grading.EXERCISES[exercise]}.py").write_text(source)
    checks = [c for c in grading.CHECKS[exercise] if only is None or c.__name__ in only]
    results = proctor.grade_exercise(exercise, folder, timeout=TEST_CHECK_TIMEOUT, only=only)
    return {check.__name__: result for check, result in zip(checks, results, strict=True)}


_SENTENCE_END = re.compile(r"[.!?](?=\s+[A-Z]|\s*$)")


def hint_problems(hint: str) -> list[str]:
    """What makes `hint` fall short of one to three sentences in the learner's terms ([] if nothing)."""
    problems = []
    text = hint.strip()
    if not text or text.endswith(":"):
        problems.append("empty, or ends where something should follow")
    if "\n" in text:
        problems.append("more than one line (a log or a traceback?)")
    if "Traceback" in text or re.search(r'File "[^"]+", line \d+', text) or "site-packages" in text:
        problems.append("a traceback or a log")
    if len(_SENTENCE_END.findall(text)) + (not _SENTENCE_END.search(text[-1:] or ".")) > 3:
        problems.append("more than three sentences")
    if len(text) > grading.MAX_HINT:
        problems.append(f"longer than {grading.MAX_HINT} characters")
    return problems
