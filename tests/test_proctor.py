"""The proctor grades each check in a child of its own, several at once: the results come in the checks'
order all the same, a file that never loads costs one time limit (not one per check), and an Interrupt
stops every child still running."""
import os
import signal
import threading
import time

import pytest

from ebookstore.config import PROJECT_ROOT
from ebookstore.course import grading, proctor
from ebookstore.runtime import processes

EXERCISE = "ex01"
SOLUTION = (PROJECT_ROOT / "solutions" / f"{grading.EXERCISES[EXERCISE]}.py").read_text()
NAMES = [grading.check_name(check) for check in grading.CHECKS[EXERCISE]]


def submission(folder, source):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{grading.EXERCISES[EXERCISE]}.py").write_text(source)
    return folder


def test_checks_run_at_once_and_are_reported_in_their_order(tmp_path):
    # Each child imports the learner's file once: the import notes when it ran, and takes a second.
    log = tmp_path / "imports.log"
    noting = (f"import os, time\nos.system('echo $PPID start $(date +%s.%N) >> {log}')\n"
              f"time.sleep(1)\nos.system('echo $PPID end $(date +%s.%N) >> {log}')\n")
    shown = []
    results = proctor.grade_exercise(EXERCISE, submission(tmp_path / "s", noting + SOLUTION), at_once=4,
                                     on_result=shown.append)
    assert all(r.passed for r in results), [r.line() for r in results]
    assert [r.name for r in shown] == [r.name for r in results] == NAMES
    events = [line.split() for line in log.read_text().splitlines()]  # "PID start|end TIME", one line a write
    spans = [(float(t), next(float(u) for p, e, u in events if p == pid and e == "end"))
             for pid, event, t in events if event == "start"]
    assert len(spans) == len(NAMES), "one child, so one import, per check"
    most = max(sum(start <= at < end for start, end in spans) for at, _ in spans)
    # The first check goes alone until its child has loaded the file; then the others all start.
    assert most == len(NAMES) - 1, spans


def test_a_file_that_never_loads_costs_one_time_limit(tmp_path, monkeypatch):
    children = []
    start_child = proctor._start_child
    monkeypatch.setattr(proctor, "_start_child", lambda *args: children.append(start_child(*args)) or children[-1])
    monkeypatch.setattr(proctor, "STARTUP", 2.0)
    started = time.monotonic()
    results = proctor.grade_exercise(EXERCISE, submission(tmp_path, "while True:\n    pass\n"), timeout=1)
    took = time.monotonic() - started
    assert [r.name for r in results] == NAMES
    assert all("did not finish loading" in r.hint for r in results), [r.line() for r in results]
    assert len(children) == 1, "a child per check for a file no child can load"
    assert took < 2.0 + 1 + 5, f"{took:.1f} s"


HANGING = """
import subprocess

def stopwatch(func, *args, **kwargs):
    subprocess.Popen(["sleep", "271.5"], start_new_session=True)
    while True:
        pass
"""


def test_an_interrupt_while_checks_run_stops_every_child(tmp_path, monkeypatch):
    tags = []
    start_child = proctor._start_child
    monkeypatch.setattr(proctor, "_start_child", lambda args, env, *fds: tags.append(env[processes.RUN_TAG])
                        or start_child(args, env, *fds))
    interrupted = []
    timer = threading.Timer(3, lambda: interrupted.append(time.monotonic()) or os.kill(os.getpid(), signal.SIGINT))
    timer.start()  # Interrupt, as JupyterLab sends it, while the checks run (each may take 15 s)
    try:
        with pytest.raises(KeyboardInterrupt):
            proctor.grade_exercise(EXERCISE, submission(tmp_path, HANGING + SOLUTION.replace("def stopwatch(",
                                                                                             "def _stopwatch(")))
    finally:
        timer.cancel()
    # Each check may take 15 s: had they gone on, this would be 12 s or more.
    assert time.monotonic() - interrupted[0] < 10, "the checks running went on after the Interrupt"
    assert tags, "no child was started"
    left = [p for p in processes.psutil.process_iter(["cmdline"]) if (p.info["cmdline"] or [])[-1:] == ["271.5"]]
    left += [p for tag in tags for p in processes.tagged(tag)]
    assert left == [], processes.format_rows(processes.ps_rows(left))


def test_every_check_grades_the_file_as_it_was_when_queued(tmp_path):
    # JupyterLab saves the exercise (autosave, or the learner's Ctrl-S) while its check cell runs.
    folder = submission(tmp_path / "s", SOLUTION)
    with proctor.Grader(4) as grader:
        slots = grader.exercise(EXERCISE, folder)
        (folder / f"{grading.EXERCISES[EXERCISE]}.py").write_text("raise SystemExit('saved halfway')\n")
        results = grader.wait(slots)
    assert all(r.passed for r in results), [r.line() for r in results]


def test_only_grades_the_checks_named_in_the_exercise_s_order_and_a_broken_file_fails_each(tmp_path):
    functions = [check.__name__ for check in grading.CHECKS[EXERCISE]]
    chosen = [functions[-1], functions[1]]  # given out of order: graded, and given back, in the exercise's
    results = proctor.grade_exercise(EXERCISE, submission(tmp_path / "s", SOLUTION), only=chosen)
    assert [r.name for r in results] == [NAMES[1], NAMES[-1]] and all(r.passed for r in results)
    broken = proctor.grade_exercise(EXERCISE, submission(tmp_path / "b", "def stopwatch(:\n"), only=chosen)
    assert [r.name for r in broken] == [NAMES[1], NAMES[-1]], [r.line() for r in broken]
    assert all(not r.passed and "does not load" in r.hint for r in broken), [r.line() for r in broken]
