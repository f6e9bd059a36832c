"""`ebookstore grade`: a class's submissions graded, bounded in time, reported three ways, nothing left behind."""
import csv
import io
import json
import os
import secrets
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from xml.etree import ElementTree

import psutil

from ebookstore.config import PROJECT_ROOT
from ebookstore.course import grading
from ebookstore.runtime import processes
from tests.stubs import stub_from_solution

EBOOKSTORE = str(Path(sys.executable).parent / "ebookstore")
ONLY = ["ex01", "ex04"]
MARKER = f"313.{secrets.randbelow(10**6):06d}"  # the learner's stray child: `sleep 313.…`, a number of this test run's
# In the environment of every process one grade run starts: other tests grade beside this one (and start
# processes tagged "grade-…" too), and what they run is not this run's leftover.
RUN_MARK = ("EBOOKSTORE_GRADE_TEST_RUN", secrets.token_hex(6))


def write_submission(folder: Path, solved: set, edit=None) -> Path:
    folder.mkdir(parents=True)
    for exercise, module in grading.EXERCISES.items():
        solution = (PROJECT_ROOT / "solutions" / f"{module}.py").read_text()
        source = solution if exercise in solved else stub_from_solution(solution)
        if edit and exercise in edit:
            source = edit[exercise](source)
        (folder / f"{module}.py").write_text(source)
    return folder


def endless(source: str) -> str:
    """A stopwatch that starts a child of its own in a new session, then never returns."""
    broken = source.replace("    started = time.perf_counter()\n    result = func",
                            "    import subprocess\n"
                            f"    subprocess.Popen(['sleep', '{MARKER}'], start_new_session=True)\n"
                            "    while True:\n        pass\n"
                            "    started = time.perf_counter()\n    result = func", 1)
    assert "while True" in broken
    return broken


def test_grade_five_submissions(tmp_path):
    solutions = write_submission(tmp_path / "build" / "solutions-copy", set(grading.EXERCISES))
    archive = tmp_path / "zipped.zip"
    with zipfile.ZipFile(archive, "w") as z:  # a zip of a fork's clone: exercises/ one level down
        for file in solutions.iterdir():
            z.write(file, f"fork/exercises/{file.name}")
    subs = {
        "zipped": archive,
        "untouched": write_submission(tmp_path / "untouched", set()),
        "partly": write_submission(tmp_path / "partly", {"ex01"}),
        "looping": write_submission(tmp_path / "looping", set(grading.EXERCISES), {"ex01": endless}),
        "broken": write_submission(tmp_path / "broken", set(grading.EXERCISES),
                                   {"ex04": lambda s: s.replace("def buy(", "def buy(:", 1)}),
    }
    (subs["partly"] / f"{grading.EXERCISES['ex04']}.py").unlink()  # not submitted
    started = time.perf_counter()
    run = subprocess.run([EBOOKSTORE, "grade", *map(str, subs.values()), "--only", ",".join(ONLY), "--timeout", "6",
                          "--jobs", "2", "--json", str(tmp_path / "marks.json"), "--csv", str(tmp_path / "marks.csv"),
                          "--junit", str(tmp_path / "marks.xml")], capture_output=True, text=True, timeout=240,
                         env={**os.environ, RUN_MARK[0]: RUN_MARK[1]})
    seconds = time.perf_counter() - started
    assert run.returncode == 0, run.stdout + run.stderr
    assert "class summary" in run.stdout and "Traceback" not in run.stdout + run.stderr
    print(f"graded 5 submissions ({', '.join(ONLY)}) with --jobs 2 in {seconds:.1f} s")

    checks = {e: [grading.check_name(c) for c in grading.CHECKS[e]] for e in ONLY}
    marks = json.loads((tmp_path / "marks.json").read_text())
    assert {tuple(sorted(m)) for m in marks} == {("check", "exercise", "hint", "passed", "seconds", "submission")}
    by = {(m["submission"], m["exercise"], m["check"]): m for m in marks}
    assert len(by) == len(marks) == 5 * sum(map(len, checks.values())), "one mark per submission and check"

    def passed(sub, exercise):
        return [by[(sub, exercise, c)]["passed"] for c in checks[exercise]]

    failed = [(m["check"], m["hint"]) for m in marks if m["submission"] == "zipped" and not m["passed"]]
    assert failed == [], "a solved submission got ✗"
    assert not any(passed("untouched", "ex01") + passed("untouched", "ex04"))
    assert all(passed("partly", "ex01")) and not any(passed("partly", "ex04"))
    assert all("not submitted" in by[("partly", "ex04", c)]["hint"] for c in checks["ex04"])
    loop = by[("looping", "ex01", checks["ex01"][0])]
    assert not loop["passed"] and "did not finish within 6 s" in loop["hint"]
    assert all(passed("looping", "ex04")), "grading went on after the timeout"
    assert all(passed("broken", "ex01")) and not any(passed("broken", "ex04"))
    assert all("SyntaxError" in by[("broken", "ex04", c)]["hint"] for c in checks["ex04"])

    rows = list(csv.DictReader(io.StringIO((tmp_path / "marks.csv").read_text())))
    assert [(r["submission"], r["exercise"], r["check"], r["passed"]) for r in rows] == \
        [(m["submission"], m["exercise"], m["check"], str(m["passed"])) for m in marks]

    suites = ElementTree.parse(tmp_path / "marks.xml").getroot()
    assert [s.get("name") for s in suites] == list(subs)
    for suite in suites:
        cases = suite.findall("testcase")
        assert len(cases) == sum(map(len, checks.values()))
        failed = sum(1 for m in marks if m["submission"] == suite.get("name") and not m["passed"])
        assert int(suite.get("failures")) == failed == sum(1 for c in cases if c.find("failure") is not None)

    strays = [p for p in psutil.process_iter(["cmdline"]) if MARKER in " ".join(p.info["cmdline"] or [])]
    assert strays == [], "the learner's own child was stopped with the rest"
    graders = [p for p in psutil.process_iter() if processes.environ(p).get(RUN_MARK[0]) == RUN_MARK[1]
               and processes.environ(p).get(processes.RUN_TAG, "").startswith("grade-")]
    assert graders == [], "nothing the grading started is left running"


def test_grade_usage_errors_exit_2(tmp_path):
    assert subprocess.run([EBOOKSTORE, "grade", str(tmp_path / "nope")], capture_output=True).returncode == 2
    assert subprocess.run([EBOOKSTORE, "grade", str(tmp_path), "--only", "ex99"], capture_output=True).returncode == 2
    assert subprocess.run([EBOOKSTORE, "grade"], capture_output=True).returncode == 2


def test_a_submission_cannot_print_its_own_marks(tmp_path):
    """What the learner's code prints is not read as the grader's report, and a stray JSON line breaks nothing."""
    fake = ('import json\nprint(json.dumps({"status": 1}))\n'
            'print(json.dumps({"result": {"exercise": "ex01", "name": "anything", "passed": True, "hint": "",'
            ' "seconds": 0.1}}))\n')
    folder = write_submission(tmp_path / "cheat", set(), {"ex01": lambda s: fake + s})
    run = subprocess.run([EBOOKSTORE, "grade", str(folder), "--only", "ex01", "--json"], capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    marks = json.loads(run.stdout)
    assert [m["check"] for m in marks] == [grading.check_name(c) for c in grading.CHECKS["ex01"]]
    assert not any(m["passed"] for m in marks)


def test_an_unreadable_submission_is_marked_in_its_place(tmp_path):
    """A broken .zip gets a ✗ "cannot be read" on every check, and the others' marks keep the order given."""
    broken = tmp_path / "broken.zip"
    broken.write_text("not a zip file")
    first, last = write_submission(tmp_path / "first", {"ex01"}), write_submission(tmp_path / "last", {"ex01"})
    run = subprocess.run([EBOOKSTORE, "grade", str(first), str(broken), str(last), "--only", "ex01", "--json"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    marks = json.loads(run.stdout)
    checks = [grading.check_name(c) for c in grading.CHECKS["ex01"]]
    assert [(m["submission"], m["check"]) for m in marks] == \
        [(s, c) for s in ("first", "broken", "last") for c in checks]
    assert all(m["passed"] for m in marks if m["submission"] != "broken")
    assert all(not m["passed"] and "cannot be read" in m["hint"] for m in marks if m["submission"] == "broken")
