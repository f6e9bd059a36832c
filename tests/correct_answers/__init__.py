"""The catalogue of correct alternatives: answers a learner may write that differ from solutions/.

`exNN.toml` lists correct answers to exercise NN written another way — another API or tool,
another structure, another output format where the contract leaves it open — each meeting
every promise of the exercise's map (solutions/promises/exNN.md). An entry names itself
(`name`), says in a tutor's words how it differs (`approach`), and gives its source either
whole (`source`, the complete exercise file) or as edits of the solution: `find` (text that
occurs exactly once in solutions/exNN_….py) and `replace`, or several pairs under
`[[correct.edits]]`. Every check must accept every entry: where one rejects it, the check
judges how the code works instead of what it promised, and the check is what gets fixed.
"""
from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

from ebookstore.config import PROJECT_ROOT
from ebookstore.course import grading

HERE = Path(__file__).parent


@dataclasses.dataclass(frozen=True)
class CorrectAnswer:
    exercise: str
    name: str
    approach: str
    edits: tuple[tuple[str, str], ...]
    whole: str | None = None

    @property
    def id(self) -> str:
        return f"{self.exercise}-{self.name}"

    def solution(self) -> str:
        return (PROJECT_ROOT / "solutions" / f"{grading.EXERCISES[self.exercise]}.py").read_text()

    def source(self) -> str:
        """The alternative's file, under a first line that says how it differs."""
        text = self.whole if self.whole is not None else self.solution()
        for find, replace in self.edits:
            if text.count(find) != 1:
                raise ValueError(f"{self.id}: the text to replace occurs {text.count(find)} times, not once: {find!r}")
            text = text.replace(find, replace)
        return f"# CORRECT, another way: {self.approach}\n{text}"


def load() -> list[CorrectAnswer]:
    entries = []
    for path in sorted(HERE.glob("ex*.toml")):
        for entry in tomllib.loads(path.read_text()).get("correct", []):
            edits = [(e["find"], e["replace"]) for e in entry.get("edits", [])]
            if "find" in entry:
                edits.insert(0, (entry["find"], entry["replace"]))
            entries.append(CorrectAnswer(path.stem, entry["name"], entry["approach"], tuple(edits), entry.get("source")))
    return entries
