"""`ebookstore grade PATH...`: grade a class's submissions, every check bounded in time.

A submission is one learner's exercise files (exNN_topic.py, named as in exercises/): a folder
(a copy of their exercises/, an unpacked zip, a clone of their fork) or a .zip file. Each exercise
is graded by the proctor (ebookstore/course/proctor.py), as a learner's own check is: each check in a
child process of its own that reports it as a JSON line. A check still running after the timeout
has the child's whole process tree stopped — found by the run tag that every process it started
inherits, the learner's own forks included — and is marked "did not finish"; grading goes on with
the next check. A few checks are graded at once (`--jobs` × 4).

Grading runs the learner's code, with the rights of whoever grades: grade as an unprivileged user.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import sys
import tempfile
import zipfile
from pathlib import Path
from xml.etree import ElementTree

from ebookstore.course import grading, proctor

DEFAULT_TIMEOUT = 30.0  # seconds one check may take
FILES = {f"{module}.py": exercise for exercise, module in grading.EXERCISES.items()}


@dataclasses.dataclass
class Mark:
    """One check of one exercise of one submission."""
    submission: str
    exercise: str
    check: str
    passed: bool
    hint: str
    seconds: float


def exercise_folder(path: Path, unpack_into: Path) -> Path:
    """The folder of a submission that holds its exercise files (a .zip is unpacked into `unpack_into`)."""
    if path.is_file() and path.suffix == ".zip":
        with zipfile.ZipFile(path) as archive:
            archive.extractall(unpack_into)  # zipfile drops absolute paths and ".." from member names
        path = unpack_into
    found: dict[Path, int] = {}
    for file in path.rglob("ex[0-9][0-9]_*.py"):
        if file.name in FILES and "solutions" not in file.parts[len(path.parts):]:
            found[file.parent] = found.get(file.parent, 0) + 1
    return max(found, key=lambda folder: (found[folder], -len(folder.parts))) if found else path


def grade(paths: list[Path], exercises: list[str], timeout: float = DEFAULT_TIMEOUT, jobs: int = 1) -> list[Mark]:
    """Marks of every submission in `paths`, in order: `jobs` × proctor.CHECKS_AT_ONCE checks graded at a time.

    One grader for the whole class, not one per submission or exercise: a submission's last, long check
    does not keep the next one from starting, so the machine stays busy until the class is done.
    """
    names = _names(paths)
    graded: list[tuple[str, str, list]] = []  # (submission, exercise, its slots), in the order of the marks
    with tempfile.TemporaryDirectory(prefix="submissions-") as unpacked, \
            proctor.Grader(max(1, jobs) * proctor.CHECKS_AT_ONCE, timeout) as grader:
        for index, path in enumerate(paths):
            try:
                folder = exercise_folder(path, Path(unpacked) / str(index))
            except (zipfile.BadZipFile, OSError) as error:
                graded += [(names[path], e, [grading.Result(e, grading.check_name(c), False,
                                                            f"the submission cannot be read: {error}", 0.0)
                                             for c in grading.CHECKS[e]]) for e in exercises]
                continue
            graded += [(names[path], exercise, grader.exercise(exercise, folder)) for exercise in exercises]
        return [Mark(submission, r.exercise, r.name, r.passed, r.hint, round(r.seconds, 2))
                for submission, exercise, slots in graded for r in grader.wait(slots)]


def _names(paths: list[Path]) -> dict[Path, str]:
    names: dict[Path, str] = {}
    for path in paths:
        base = path.stem if path.suffix == ".zip" else path.resolve().name
        name, n = base, 2
        while name in names.values():
            name, n = f"{base}-{n}", n + 1
        names[path] = name
    return names


# -- reports -----------------------------------------------------------------
def to_json(marks: list[Mark]) -> str:
    return json.dumps([dataclasses.asdict(m) for m in marks], indent=2, ensure_ascii=False)


def to_csv(marks: list[Mark]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=[f.name for f in dataclasses.fields(Mark)])
    writer.writeheader()
    writer.writerows(dataclasses.asdict(m) for m in marks)
    return out.getvalue()


def to_junit(marks: list[Mark]) -> str:
    """JUnit XML: a testsuite per submission, a testcase per check (failed checks carry the hint)."""
    suites = ElementTree.Element("testsuites", name="ebookstore grade")
    for submission in dict.fromkeys(m.submission for m in marks):
        mine = [m for m in marks if m.submission == submission]
        suite = ElementTree.SubElement(suites, "testsuite", name=submission, tests=str(len(mine)),
                                       failures=str(sum(not m.passed for m in mine)),
                                       time=f"{sum(m.seconds for m in mine):.2f}")
        for m in mine:
            case = ElementTree.SubElement(suite, "testcase", classname=f"{submission}.{m.exercise}", name=m.check,
                                          time=f"{m.seconds:.2f}")
            if not m.passed:
                ElementTree.SubElement(case, "failure", message=m.hint).text = m.hint
    return ElementTree.tostring(suites, encoding="unicode", xml_declaration=True)


def table(marks: list[Mark]) -> str:
    """A readable report: each submission's checks, then the class summary."""
    lines = []
    submissions = list(dict.fromkeys(m.submission for m in marks))
    for submission in submissions:
        mine = [m for m in marks if m.submission == submission]
        lines.append(f"== {submission}: {sum(m.passed for m in mine)}/{len(mine)} checks")
        for m in mine:
            lines.append(f"  {'✓' if m.passed else '✗'} {m.exercise} {m.check}  ({m.seconds:.1f} s)")
            if not m.passed:
                lines.append(f"      {m.hint}")
    lines.append("== class summary")
    exercises = list(dict.fromkeys(m.exercise for m in marks))
    lines.append(f"  {'submission':<24} {'checks':>8}  " + " ".join(e[2:] for e in exercises))
    for submission in submissions:
        mine = [m for m in marks if m.submission == submission]
        done = " ".join(" ✓" if all(m.passed for m in mine if m.exercise == e) else " ·" for e in exercises)
        lines.append(f"  {submission:<24} {sum(m.passed for m in mine):>3}/{len(mine):<4}  {done}")
    lines.append("  (✓: every check of that exercise passes)")
    return "\n".join(lines)


def run_cli(paths: list[str], only: str | None, timeout: float, jobs: int, as_json: str | None,
            as_csv: str | None, junit: str | None) -> int:
    """`ebookstore grade`: 0 once every submission is graded, whatever the marks; 2 on a usage error.

    The table goes to stdout unless --json or --csv go there ("-"); files get what they ask for.
    """
    exercises = [e.strip() for e in only.split(",")] if only else list(grading.EXERCISES)
    unknown = [e for e in exercises if e not in grading.EXERCISES]
    missing = [p for p in paths if not Path(p).exists()]
    if unknown or missing or timeout <= 0 or jobs < 1 or (as_json == "-" and as_csv == "-"):
        problem = (f"unknown exercise(s) {', '.join(unknown)}" if unknown else
                   f"no such submission: {', '.join(missing)}" if missing else
                   "--timeout and --jobs must be positive" if timeout <= 0 or jobs < 1 else
                   "only one of --json and --csv can go to stdout")
        print(f"ebookstore grade: {problem}", file=sys.stderr)
        return 2
    marks = grade([Path(p) for p in paths], exercises, timeout, jobs)
    stdout = None
    for target, render in ((as_json, to_json), (as_csv, to_csv), (junit, to_junit)):
        if target == "-":
            stdout = render(marks)
        elif target:
            Path(target).write_text(render(marks))
    text = stdout if stdout is not None else table(marks)
    print(text, end="" if text.endswith("\n") else "\n")
    return 0
