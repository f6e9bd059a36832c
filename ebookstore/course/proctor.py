"""The proctor: every exercise graded in a child process, every check within a time limit.

    check("ex04")                      # a notebook's check cell
    ebookstore check ex04 [--solutions]  # a terminal; `ebookstore grade` uses the same proctor

The learner's code may loop forever, sleep, block on a socket, fork, or ignore SIGINT and SIGTERM:
it runs in a child in a session of its own — forked by the fork server (forkserver.py), which has the
grader loaded, or else started as `python -m ebookstore.course.proctor …` — that reports each check as a
JSON line on a pipe of its own, so what the learner's code prints can't pass for a mark.
A check still running after the time limit has the child's whole tree stopped — found by the run tag
every process it starts inherits, by descent and by session, the learner's own forks included — and
is marked ✗ "did not finish within N s"; a fresh child goes on with the next check. Exercises are
independent (each check has a store, Redis and ports of its own), so several are graded at once.
"""
from __future__ import annotations

import json
import os
import queue
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ebookstore.config import PROJECT_ROOT, Settings
from ebookstore.course import forkserver, grading
from ebookstore.course.grading import Result
from ebookstore.runtime import processes

CHECK_TIMEOUT = float(os.environ.get("EBOOKSTORE_CHECK_TIMEOUT", "15"))  # seconds a learner's check may take
STARTUP = 20.0  # seconds a child may take to start Python and load the modules, on a busy machine
SOLUTIONS = grading.SOLUTIONS_FOLDER  # the child's FOLDER argument that grades solutions/


def timed_out_hint(seconds: float) -> str:
    return (f"it did not finish within {seconds:g} s: look for a loop that never ends, or a wait "
            "(a join, a socket read, a sleep) without a timeout")


def grade_exercise(exercise: str, folder: Path | None, timeout: float = CHECK_TIMEOUT, solutions: bool = False,
                   on_result=None) -> list[Result]:
    """Every check of `exercise`, each within `timeout` s: solutions/ if `solutions`, else the files in `folder`.

    `on_result(result)`, if given, is called as each check ends (to show it at once).
    """
    names = [grading.check_name(check) for check in grading.CHECKS[exercise]]
    results: list[Result] = []
    first = 0
    while first < len(names):
        first = _grade_from(exercise, SOLUTIONS if solutions else str(folder), timeout, names, first, results,
                            on_result or (lambda result: None))
    return results


def _grade_from(exercise, folder, timeout, names, first, results, on_result) -> int:
    """Run one child from check `first` on; add its results; return the index of the next check to grade."""
    prefix = f"grade-{secrets.token_hex(4)}"
    env = {k: v for k, v in os.environ.items() if k not in ("EBOOKSTORE_SOLUTIONS", "EBOOKSTORE_EXERCISES")}
    env.update({processes.RUN_TAG: prefix, "EBOOKSTORE_TEST_TAG_PREFIX": prefix, "PYTHONUNBUFFERED": "1"})

    def add(result: Result) -> None:
        results.append(result)
        on_result(result)
    report_r, report_w = os.pipe()
    with tempfile.TemporaryFile("w+") as output, os.fdopen(report_r) as reader:
        child = None
        try:
            try:
                child = _start_child([exercise, folder, str(first)], env, output.fileno(), report_w)
            finally:
                os.close(report_w)  # the child has its copy: the pipe ends when the child (and the server's copy) do
            lines: queue.Queue = queue.Queue()
            threading.Thread(target=lambda: [lines.put(line) for line in reader] + [lines.put(None)],
                             daemon=True).start()
            # The clock of the first check starts when the child is ready to run it (Python started, modules loaded).
            running, started, launched = first, None, time.monotonic()
            while True:
                # Before its first check the child starts Python and imports the learner's file: allow for that.
                deadline = (launched + STARTUP + timeout) if started is None else (started + timeout)
                try:
                    line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:  # the check ran out of time: stop everything the child started
                    if running >= len(names):  # all checks done, but the child would not exit
                        return len(names)
                    if started is None:  # the learner's file never finished loading: no check can run
                        for name in names[running:]:
                            add(Result(exercise, name, False, "your file did not finish loading within "
                                       f"{timeout:g} s: look for code that runs at import (outside any function) "
                                       "and never ends", 0.0))
                        return len(names)
                    add(Result(exercise, names[running], False, timed_out_hint(timeout), timeout))
                    return running + 1
                if line is None:  # the child is done (or died)
                    if running < len(names):
                        output.seek(0)
                        last = " ".join(output.read().strip().splitlines()[-2:]) or f"exit status {child.wait(5)}"
                        for name in names[running:]:
                            add(Result(exercise, name, False, f"the grader stopped: {last[:300]}", 0.0))
                    return len(names)
                message = _message(line)
                if message is None:
                    continue
                if "exit" in message:  # a forked child's exit status, from the fork server
                    child.returncode = message["exit"]
                    continue
                if "start" in message:
                    running, started = int(message["start"]), time.monotonic()
                    continue
                result = message["result"]
                if result["name"] in ("submitted", "imports"):  # no module to grade: every check says why
                    for name in names:
                        add(Result(exercise, name, False, result["hint"], 0.0))
                    running = len(names)
                else:
                    add(Result(exercise, result["name"], bool(result["passed"]), result["hint"],
                               round(float(result["seconds"]), 2)))
                    running, started = running + 1, time.monotonic()
        finally:
            # By run tag too: a child forked for us before an Interrupt told us its PID is found all the same.
            stop_tree(prefix, child.pid if child is not None else None)
            if child is not None:
                child.wait(0)


class Child:
    """The child grading an exercise: forked by the fork server, or (if that fails) started afresh."""

    def __init__(self, pid: int, popen: subprocess.Popen | None = None):
        self.pid, self.popen, self.returncode = pid, popen, None

    def wait(self, timeout: float) -> int | str:
        """Its exit status once known (up to `timeout` s), or "?"."""
        if self.popen is not None:
            try:
                self.returncode = self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        return "?" if self.returncode is None else self.returncode


def _start_child(args: list[str], env: dict, output_fd: int, report_fd: int) -> Child:
    pid = forkserver.fork(args, env, output_fd, report_fd)
    if pid is not None:
        return Child(pid)
    popen = subprocess.Popen([sys.executable, "-m", __name__, *args, str(report_fd)], env=env, stdout=output_fd,
                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                             pass_fds=(report_fd,), cwd=str(PROJECT_ROOT))
    return Child(popen.pid, popen)


def _message(line: str) -> dict | None:
    """A report line: {"start": index} or {"result": {name, passed, hint, seconds, …}} from the child,
    {"exit": status} from the fork server."""
    try:
        message = json.loads(line)
    except ValueError:
        return None
    if not isinstance(message, dict):
        return None
    if isinstance(message.get("start"), int) or isinstance(message.get("exit"), int):
        return message
    result = message.get("result")
    if isinstance(result, dict) and {"name", "passed", "hint", "seconds"} <= set(result):
        return message
    return None


def stop_tree(prefix: str, child: int | None) -> None:
    """Stop every process of one child's run: the child, workers, Redis, the learner's own forks.

    Found three ways, so that one which changed its environment or left the session is still found:
    the run tag the child's processes inherit, the child's descendants, the child's session. SIGKILL
    at once (a timed-out check gets no grace), and again for any process forked in between. `child` is None
    when an Interrupt came before its PID did: then the run tag finds what it started (and the fork server
    stops a child whose PID it could not hand over).
    """
    for _ in range(5):
        found = {}
        for proc in processes.psutil.process_iter():
            try:
                if (processes.environ(proc).get(processes.RUN_TAG, "").startswith(prefix)
                        or (child is not None and (proc.pid == child or os.getsid(proc.pid) == child))):
                    found[proc.pid] = proc
            except (OSError, processes.psutil.Error):
                continue
        try:
            if child is not None:
                found.update({p.pid: p for p in processes.psutil.Process(child).children(recursive=True)})
        except processes.psutil.Error:
            pass
        found = {pid: p for pid, p in found.items() if not processes.gone(p)}
        if not found:
            return
        for proc in found.values():
            try:
                proc.kill()
            except processes.psutil.Error:
                pass
        processes.wait_gone(list(found.values()), 2)


def grade_exercises(exercises: list[str], folder: Path | None, timeout: float = CHECK_TIMEOUT,
                    solutions: bool = False, at_once: int = 1, on_exercise=None) -> dict[str, list[Result]]:
    """{exercise: its results}, `at_once` exercises graded at the same time.

    `on_exercise(exercise, results)` is called for each exercise in the order given, as soon as it and
    every exercise before it are graded (so that a terminal shows them in order, as they come).
    """
    graded: dict[str, list[Result]] = {}
    done = threading.Condition()
    shown = 0

    def one(exercise):
        nonlocal shown
        results = grade_exercise(exercise, folder, timeout, solutions)
        with done:
            graded[exercise] = results
            while shown < len(exercises) and exercises[shown] in graded:
                if on_exercise:
                    on_exercise(exercises[shown], graded[exercises[shown]])
                shown += 1
    with ThreadPoolExecutor(max_workers=max(1, at_once)) as pool:
        list(pool.map(one, exercises))
    return {exercise: graded[exercise] for exercise in exercises}


def learner_folder() -> Path:
    """The exercise files a learner's check grades: $EBOOKSTORE_EXERCISES, else the project's exercises/."""
    return Path(os.environ.get("EBOOKSTORE_EXERCISES") or PROJECT_ROOT / "exercises")


def summary(results: list[Result]) -> str:
    """The line a check ends with, in a notebook and in a terminal alike."""
    passed = all(r.passed for r in results)
    text = "All checks pass." if passed else "Not yet: read the hints above, edit the exercise file, run the check again."
    return f"{text} ({sum(r.passed for r in results)}/{len(results)} checks, {sum(r.seconds for r in results):.1f} s)"


def check(*exercises: str, solutions: bool | None = None, timeout: float = CHECK_TIMEOUT) -> bool:
    """Grade exercises in a notebook: one ✓/✗ line per check as it ends, then the summary line.

    In solutions mode (EBOOKSTORE_SOLUTIONS=1) a ✗ raises, so that a notebook run fails; for a
    learner it only prints the hints.
    """
    solutions = Settings.from_env().solutions if solutions is None else solutions
    results: list[Result] = []
    for exercise in exercises:
        if exercise not in grading.EXERCISES:
            raise ValueError(f"unknown exercise {exercise!r}: choose from {', '.join(grading.EXERCISES)}")
        results += grade_exercise(exercise, learner_folder(), timeout, solutions,
                                  on_result=lambda result: print(result.line(), flush=True))
    print(summary(results))
    if solutions and not all(r.passed for r in results):
        raise AssertionError("a check failed in solutions mode")
    return all(r.passed for r in results)


def run_cli(exercises: list[str], solutions: bool, all_: bool = False, folder: Path | None = None,
            timeout: float = CHECK_TIMEOUT) -> int:
    """`ebookstore check`: exit status 0 only when every check passes."""
    chosen = exercises or list(grading.EXERCISES)

    def show(exercise, results):
        if not all_:
            for result in results:
                print(result.line(), flush=True)
    graded = grade_exercises(chosen, Path(folder) if folder else learner_folder(), timeout, solutions,
                             at_once=3 if len(chosen) > 1 else 1, on_exercise=show)
    if all_ or len(chosen) > 1:
        print("progress:")
        for exercise, results in graded.items():
            ok = sum(r.passed for r in results)
            print(f"  {'✓' if ok == len(results) else '✗'} {exercise} {grading.EXERCISES[exercise]:<38} "
                  f"{ok}/{len(results)} checks")
    everything = [r for results in graded.values() for r in results]
    print(summary(everything))
    return 0 if all(r.passed for r in everything) else 1


if __name__ == "__main__":
    grading.report_exercise(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
