"""The proctor: every check graded in a child process of its own, within a time limit.

    check("ex04")                      # a notebook's check cell
    ebookstore check ex04 [--solutions]  # a terminal; `ebookstore grade` uses the same proctor

The learner's code may loop forever, sleep, block on a socket, fork, or ignore SIGINT and SIGTERM:
each check runs in a child of its own, in a session of its own — forked by the fork server
(forkserver.py), which has the grader loaded, or else started as `python -m ebookstore.course.proctor …`
— that reports the check as a JSON line on a pipe of its own, so what the learner's code prints can't
pass for a mark. A check still running after the time limit has the child's whole tree stopped — found
by the run tag every process it starts inherits, by descent and by session, the learner's own forks
included — and is marked ✗ "did not finish within N s". Checks are independent (each has a store,
Redis and ports of its own), so several are graded at once (`Grader`), of one exercise or of several.
Each child imports the learner's file afresh: code at its top level runs once per check.
"""
from __future__ import annotations

import itertools
import json
import os
import queue
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from ebookstore.config import PROJECT_ROOT, Settings
from ebookstore.course import forkserver, grading
from ebookstore.course.grading import Result
from ebookstore.runtime import processes

CHECK_TIMEOUT = grading.check_timeout()  # seconds a learner's check may take
STARTUP = 20.0  # seconds a child may take to start Python and load the modules, on a busy machine
SOLUTIONS = grading.SOLUTIONS_FOLDER  # the child's FOLDER argument that grades solutions/
# Checks graded at the same time (each in a child of its own): most of a check is waiting for processes,
# signals and retries, so a check cell of four checks ends in about the time of its longest.
CHECKS_AT_ONCE = 4


def timed_out_hint(seconds: float) -> str:
    return (f"it did not finish within {seconds:g} s: look for a loop that never ends, or a wait "
            "(a join, a socket read, a sleep) without a timeout")


class Grader:
    """Checks graded `at_once` at a time, each in a child of its own: `with Grader(3, timeout) as grader:`.

    `grader.exercise(...)` queues one exercise's checks and gives back its slots (one per check, filled
    as each check ends); `grader.wait(slots)` waits for them. The first check of an exercise goes alone
    until its child has loaded the learner's file: a file that is missing, does not import or never
    finishes loading is then reported for every check at once, by that one child, instead of by one
    child (and one time limit) per check. Checks wait their turn in the order their exercises were
    queued, so that exercises end roughly in that order. Every check of an exercise grades the same copy
    of the learner's file, taken when it is queued (a save in between changes none of them). Leaving the
    `with` on an exception (an Interrupt) stops every child still running and drops the checks not started.
    """

    def __init__(self, at_once: int, timeout: float = CHECK_TIMEOUT):
        self.timeout, self.cancelled = timeout, threading.Event()
        self.tasks: queue.PriorityQueue = queue.PriorityQueue()  # (exercise's number, check index, n, task)
        self.changed = threading.Condition()
        self.error: BaseException | None = None
        self.queued = itertools.count()
        self.copies = tempfile.TemporaryDirectory(prefix="grade-")  # the learner's files, as queued
        self.threads = [threading.Thread(target=self._work, daemon=True) for _ in range(max(1, at_once))]
        for thread in self.threads:
            thread.start()

    def __enter__(self):
        return self

    def __exit__(self, kind, error, trace):
        if kind is not None:
            self.cancelled.set()  # each running check's thread stops its child at once
        for _ in self.threads:
            self.tasks.put((float("inf"), 0, next(self.queued), None))
        try:
            for thread in self.threads:
                thread.join()
        except BaseException:  # a second Interrupt while the checks end: stop them all the same
            self.cancelled.set()
            for thread in self.threads:
                thread.join()
            raise
        finally:
            self.copies.cleanup()
        if kind is None and self.error is not None:  # a thread failed after the last result was read
            raise self.error
        return False

    def exercise(self, exercise: str, folder: Path | None, solutions: bool = False,
                 only: list[str] | None = None) -> list[Result | None]:
        """Queue every check of `exercise` (solutions/ if `solutions`, else the files in `folder`); its slots.

        `only`: just the checks whose function names are listed (one slot each, in the exercise's order).
        """
        checks = grading.CHECKS[exercise]
        names = [grading.check_name(check) for check in checks]
        chosen = [i for i, check in enumerate(checks) if only is None or check.__name__ in only]
        slots: list[Result | None] = [None] * len(chosen)
        order = next(self.queued)
        source = Path(folder) / f"{grading.EXERCISES[exercise]}.py" if folder is not None else None
        if not solutions and source is not None and source.is_file():  # one copy for all its checks
            folder = Path(self.copies.name) / str(order)
            folder.mkdir()
            shutil.copyfile(source, folder / source.name)

        def fill(index: int, result: Result) -> None:
            with self.changed:
                slots[chosen.index(index)] = result
                self.changed.notify_all()

        def grade(index: int) -> None:
            first = index == chosen[0]
            _grade_check(exercise, SOLUTIONS if solutions else str(folder), self.timeout, names, index, fill,
                         self.cancelled, on_loaded=(lambda: [self._put(order, i, grade) for i in chosen[1:]])
                         if first else None, every=chosen if first else [index])
        if chosen:
            self._put(order, chosen[0], grade)
        return slots

    def wait(self, slots: list[Result | None], on_result=None) -> list[Result]:
        """The results of `slots` once all are filled; `on_result(result)` is called for each, in order, as
        soon as it and the ones before it are in (from this thread: a notebook shows it in the right cell)."""
        shown = 0
        while shown < len(slots):
            with self.changed:
                while self.error is None and slots[shown] is None:
                    self.changed.wait(0.5)  # a timeout: an Interrupt is noticed here
                if self.error is not None:
                    raise self.error
                ready = []
                while shown < len(slots) and slots[shown] is not None:
                    ready.append(slots[shown])
                    shown += 1
            for result in ready:
                if on_result:
                    on_result(result)
        return list(slots)

    def _put(self, order: int, index: int, task) -> None:
        self.tasks.put((order, index, next(self.queued), lambda: task(index)))

    def _work(self) -> None:
        while True:
            task = self.tasks.get()[-1]
            if task is None:
                return
            if self.cancelled.is_set():
                continue
            try:
                task()
            except BaseException as error:  # an Interrupt that reached this thread, a bug: the waiter raises it
                self.cancelled.set()
                with self.changed:
                    self.error = self.error or error
                    self.changed.notify_all()


def grade_exercise(exercise: str, folder: Path | None, timeout: float = CHECK_TIMEOUT, solutions: bool = False,
                   on_result=None, at_once: int = CHECKS_AT_ONCE, only: list[str] | None = None) -> list[Result]:
    """Every check of `exercise`, each within `timeout` s, `at_once` at a time: solutions/ if `solutions`, else
    the files in `folder`. `on_result(result)`, if given, is called as each check ends, in order (to show it at once).
    `only`: just the checks whose function names are listed.
    """
    with Grader(at_once, timeout) as grader:
        return grader.wait(grader.exercise(exercise, folder, solutions, only), on_result)


def _grade_check(exercise, folder, timeout, names, index, fill, cancelled, on_loaded=None, every=None) -> None:
    """Grade check `index` in a child of its own and `fill(index, result)`.

    `on_loaded`, given for an exercise's first check, is called once the child has loaded the learner's
    file; until then, a failure is that of every check in `every` (the indexes graded: filled for all of
    them): the file is missing, does not import, never finishes loading, or the child died. `cancelled`
    set: the child is stopped, nothing filled.
    """
    # Under the tests, their run's prefix first: what a check leaves behind is then found as theirs.
    prefix = f"{os.environ.get('EBOOKSTORE_TEST_TAG_PREFIX', '')}grade-{secrets.token_hex(4)}"
    env = {k: v for k, v in os.environ.items() if k not in ("EBOOKSTORE_SOLUTIONS", "EBOOKSTORE_EXERCISES")}
    env.update({processes.RUN_TAG: prefix, "EBOOKSTORE_TEST_TAG_PREFIX": prefix, "PYTHONUNBUFFERED": "1",
                "EBOOKSTORE_CHECK_TIMEOUT": f"{timeout:g}"})  # the check's limit, for its own waits (seconds_left)
    every = every or [index]  # what a failure before loading concerns

    def add(hint: str, seconds: float = 0.0, which=(index,)) -> None:
        for i in which:
            fill(i, Result(exercise, names[i], False, hint, seconds))
    report_r, report_w = os.pipe()
    # What the learner's code printed (it may not be UTF-8); the report pipe is read and closed by a thread
    # of its own: a process that escaped with a copy of it would keep a read, and so a close, waiting forever.
    with tempfile.TemporaryFile("w+", errors="replace") as output:
        child = None
        try:
            try:
                child = _start_child([exercise, folder, str(index), str(index + 1)], env, output.fileno(), report_w)
            finally:
                os.close(report_w)  # the child has its copy: the pipe ends when the child (and the server's copy) do
            lines: queue.Queue = queue.Queue()
            threading.Thread(target=_read_lines, args=(report_r, lines), daemon=True).start()
            report_r = None
            # The clock of the check starts when the child is ready to run it (Python started, modules loaded).
            started, launched, done = None, time.monotonic(), False
            while not cancelled.is_set():
                # Before its check the child starts Python and imports the learner's file: allow for that.
                deadline = (launched + STARTUP + timeout) if started is None else (started + timeout)
                try:
                    line = lines.get(timeout=min(0.2, max(0.0, deadline - time.monotonic())))
                except queue.Empty:
                    if time.monotonic() < deadline:
                        continue
                    if done:  # the check ended, but the child would not exit
                        return
                    if started is None:  # the learner's file never finished loading: no check can run
                        return add(f"your file did not finish loading within {timeout:g} s: look for code that "
                                   "runs at import (outside any function) and never ends", which=every)
                    return add(timed_out_hint(timeout), timeout)  # stopped, with all it started: see finally
                if line is None:  # the child is done (or died)
                    if not done:
                        output.seek(0)
                        last = " ".join(output.read().strip().splitlines()[-2:]) or f"exit status {child.wait(5)}"
                        add(f"the grader stopped: {last[:300]}", which=every if started is None else (index,))
                    return
                message = _message(line)
                if message is None:
                    continue
                if "exit" in message:  # a forked child's exit status, from the fork server
                    child.returncode = message["exit"]
                elif "start" in message:
                    started = time.monotonic()
                    if on_loaded:
                        on_loaded()
                        on_loaded = None
                elif message["result"]["name"] in ("submitted", "imports"):  # no module to grade: every check says why
                    add(message["result"]["hint"], which=every)
                    done = True
                else:
                    result = message["result"]
                    fill(index, Result(exercise, result["name"], bool(result["passed"]), result["hint"],
                                       round(float(result["seconds"]), 2)))
                    done = True
        finally:
            # By run tag too: a child forked for us before an Interrupt told us its PID is found all the same.
            stop_tree(prefix, child.pid if child is not None else None)
            if child is not None:
                child.wait(0)
            if report_r is not None:  # the child never started: nobody reads it
                os.close(report_r)


def _read_lines(fd: int, lines: queue.Queue) -> None:
    """Put each line of the report pipe `fd` on `lines`, then None once the pipe ends; close it."""
    with os.fdopen(fd, errors="replace") as reader:
        for line in reader:
            lines.put(line)
    lines.put(None)


class Child:
    """The child grading a check: forked by the fork server, or (if that fails) started afresh."""

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
                    solutions: bool = False, at_once: int = CHECKS_AT_ONCE, on_exercise=None) -> dict[str, list[Result]]:
    """{exercise: its results}, `at_once` checks graded at the same time.

    `on_exercise(exercise, results)` is called for each exercise in the order given, as soon as it and
    every exercise before it are graded (so that a terminal shows them in order, as they come).
    """
    graded: dict[str, list[Result]] = {}
    with Grader(at_once, timeout) as grader:
        slots = {exercise: grader.exercise(exercise, folder, solutions) for exercise in exercises}
        for exercise in exercises:
            graded[exercise] = grader.wait(slots[exercise])
            if on_exercise:
                on_exercise(exercise, graded[exercise])
    return graded


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
                             on_exercise=show)
    if all_ or len(chosen) > 1:
        print("progress:")
        for exercise, results in graded.items():
            ok = sum(r.passed for r in results)
            print(f"  {'✓' if ok == len(results) else '✗'} {exercise} {grading.EXERCISES[exercise]:<38} "
                  f"{ok}/{len(results)} checks")
    everything = [r for results in graded.values() for r in results]
    print(summary(everything))
    return 0 if all(r.passed for r in everything) else 1


if __name__ == "__main__":  # EXERCISE FOLDER FIRST STOP REPORT_FD
    grading.report_exercise(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[5]), stop=int(sys.argv[4]))
