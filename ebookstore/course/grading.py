"""The grader: the checks of every exercise, and how one exercise is graded (`run_exercise`).

The learner meets it as `check("ex04")` in a notebook and `ebookstore check ex04 [--solutions]` in
a shell; both go through the proctor (proctor.py), which runs `run_exercise` in a child process
and gives every check a time limit. Each exercise has a list of checks (ebookstore/course/checks/exNN.py). A check runs
the learner's code for real — a Redis of its own on a free port, real worker
processes, the real store and Maildir in a throwaway state folder — and either
passes or raises `Fail` with a hint that teaches without giving the answer.
Every process started during a check (by the grader or by the learner's code,
which inherits the run tag) is stopped when the check ends.
"""
from __future__ import annotations

import dataclasses
import importlib
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Mapping
from pathlib import Path

from rq.exceptions import DeserializationError

from ebookstore import queues, store
from ebookstore.config import PROJECT_ROOT, Settings
from ebookstore.course import demo_jobs
from ebookstore.course.checks.common import Fail
from ebookstore.runtime import processes
from ebookstore.runtime.stack import Stack, new_tag

DEFAULT_CHECK_TIMEOUT = 15.0  # seconds a check may take, unless EBOOKSTORE_CHECK_TIMEOUT says otherwise


def check_timeout() -> float:
    """The seconds a check may take: $EBOOKSTORE_CHECK_TIMEOUT (the proctor sets it for its child), else 15."""
    return float(os.environ.get("EBOOKSTORE_CHECK_TIMEOUT") or DEFAULT_CHECK_TIMEOUT)


EXERCISES = {  # exercise id -> module name in exercises/ and solutions/
    "ex01": "ex01_why_background_jobs",
    "ex02": "ex02_redis_and_rq_setup",
    "ex03": "ex03_creating_jobs",
    "ex04": "ex04_async_purchase_notifications",
    "ex05": "ex05_running_workers_and_dashboard",
    "ex06": "ex06_process_management",
    "ex07": "ex07_signals_and_killing",
    "ex08": "ex08_stuck_ports",
    "ex09": "ex09_queues_and_priorities",
    "ex10": "ex10_errors_and_retries",
    "ex11": "ex11_final_integration",
    "ex12": "ex12_reliability",
    "ex13": "ex13_other_job_libraries",
}


class _Checks(Mapping):
    """exercise id -> the checks run_exercise runs, in order (checks/exNN.py's CHECKS).

    Each exercise's module is imported when first asked for: a child that grades one exercise
    need not load the others' (hypothesis, aiosmtpd, …), which would cost every check cell half a
    second of CPU.
    """

    def __getitem__(self, exercise: str) -> list:
        if exercise not in EXERCISES:
            raise KeyError(exercise)
        return importlib.import_module(f"{__package__}.checks.{exercise}").CHECKS

    def __iter__(self):
        return iter(EXERCISES)

    def __len__(self) -> int:
        return len(EXERCISES)


CHECKS = _Checks()


@dataclasses.dataclass
class Result:
    exercise: str
    name: str
    passed: bool
    hint: str
    seconds: float

    def line(self) -> str:
        mark = "✓" if self.passed else "✗"
        text = f"{mark} {self.exercise} {self.name}"
        return text if self.passed else f"{text}\n    hint: {self.hint}"


# What a check's settings turn into in os.environ (Settings.to_env) and what else points a
# process at a store: while a check runs these describe the check's store, and nothing else.
ISOLATED_VARIABLES = ("EBOOKSTORE_HOME", "EBOOKSTORE_REDIS_PORT", "EBOOKSTORE_WEB_PORT", "EBOOKSTORE_SMTP_PORT",
                      "EBOOKSTORE_DATABASE", "EBOOKSTORE_MAIL_DELAY", "EBOOKSTORE_SOLUTIONS",
                      "EBOOKSTORE_INLINE_EMAILS", "REDIS_URL", "EBOOKSTORE_SMTP_URL", "EBOOKSTORE_DASHBOARD_USER",
                      "EBOOKSTORE_DASHBOARD_PASSWORD", "EBOOKSTORE_QUEUES")


class Context:
    """What a check gets: the learner's module, settings, a Stack, a Redis connection.

    Used as `with context:`, it also points os.environ at the check's own store (state
    folder, ports, mail settings), so that the learner's code that calls
    Settings.from_env() in the grader's process works on the check's store too, never on
    the learner's var/; the environment is restored afterwards, even on error.
    Assigning `context.settings` (a check that switches to SMTP, say) updates both.
    """

    def __init__(self, exercise: str, module, home: Path, tag: str, root: Path | None = None):
        self.exercise, self.module = exercise, module
        self._saved_environment: dict[str, str | None] | None = None
        self._settings = Settings.from_env(
            home=home, redis_port=processes.free_port(), web_port=processes.free_port(),
            smtp_port=processes.free_port(), external_redis_url=None, database=None, smtp_url=None,
            mail_delay=0.0, inline_emails=False, dashboard_user="tutor", dashboard_password="check-password",
            queue_backend="rq",  # the exercises are RQ's: a learner's EBOOKSTORE_QUEUE_BACKEND must not change them
        )
        self.stack = Stack(self._settings, tag=tag, stop_at_exit=False, cwd=root or PROJECT_ROOT,
                           preload=(demo_jobs.__name__,))
        self._redis = None
        self.deadline = time.monotonic() + check_timeout()  # when the proctor stops the check: see seconds_left

    @property
    def settings(self) -> Settings:
        return self._settings

    @settings.setter
    def settings(self, settings: Settings) -> None:
        self._settings = self.stack.settings = settings
        if self._saved_environment is not None:
            self._apply_environment()

    def _apply_environment(self) -> None:
        for key in ISOLATED_VARIABLES:
            os.environ.pop(key, None)
        os.environ.update(self._settings.to_env())

    def __enter__(self):
        # What the check starts is stopped when it ends; the run tag finds most of it, but not a process that
        # rewrites its environment (redis-server does, for its title): our new descendants are the rest.
        self._children_before = {p.pid for p in _descendants()}
        self._saved_environment = {key: os.environ.get(key) for key in ISOLATED_VARIABLES}
        self._apply_environment()
        return self

    def __exit__(self, *exc):
        try:
            self.stack.stop(timeout=2)
            processes.stop([p for p in _descendants() if p.pid not in self._children_before], timeout=2)
        finally:
            saved, self._saved_environment = self._saved_environment, None
            for key, value in (saved or {}).items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        return False

    @property
    def redis(self):
        """A connection to a Redis of the check's own (started on first use)."""
        if self._redis is None:
            self.stack.redis()
            self._redis = queues.connect(self.settings)
        return self._redis

    def db(self):
        return store.connect(self.settings.database_path)

    def seconds_left(self, reserve: float = 3.0) -> float:
        """How long the check may still wait, keeping `reserve` s before the proctor's limit: the check then raises
        its Fail, and its clean-up stops what it started (a worker given 2 s to stop, then SIGKILLed), before the
        proctor would replace its hint by "did not finish within N s".

        A wait for a process the learner's code started (a worker: Python, imports, a fork per job) lasts
        until that process is done or seconds_left() runs out, not a fixed few seconds: on a busy machine (a
        class server, a loaded CI runner) a correct answer is slow, and only a wrong one waits to the end.
        """
        return max(0.0, self.deadline - time.monotonic() - reserve)

    def learner(self, name: str):
        """The learner's function `name`, or a Fail that says which one is missing."""
        func = getattr(self.module, name, None)
        if func is None:
            raise Fail(f"{self.module.__name__} has no `{name}`: keep the names of the exercise file")
        return func


def _descendants() -> list:
    try:
        return processes.psutil.Process().children(recursive=True)
    except processes.psutil.Error:
        return []


def exercise_module(exercise: str, solutions: bool, root: Path | None = None):
    """Import (afresh: the learner edits the file between checks) exercises/ or solutions/ exNN from `root`."""
    package = "solutions" if solutions else "exercises"
    root = str(root or PROJECT_ROOT)
    if sys.path[:1] != [root]:
        sys.path.insert(0, root)
    name = f"{package}.{EXERCISES[exercise]}"
    for loaded in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
        if not (getattr(sys.modules[loaded], "__file__", None) or "").startswith(root + os.sep):
            del sys.modules[loaded]  # imported from another folder (an earlier graded submission)
    if name in sys.modules:
        return importlib.reload(sys.modules[name])
    return importlib.import_module(name)


def staged_folder(folder: Path, exercise: str, into: Path) -> Path:
    """A project-like folder holding `folder`'s exNN file as `exercises/exNN_….py`: workers import it from there.

    Raises FileNotFoundError if `folder` has no file for `exercise`.
    """
    source = Path(folder) / f"{EXERCISES[exercise]}.py"
    if not source.is_file():
        raise FileNotFoundError(f"not submitted: there is no {source.name} in {folder}")
    package = into / "exercises"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text("")
    shutil.copyfile(source, package / source.name)
    return into


MAX_HINT = 400  # characters: a hint is one to three sentences, never a log


def _one_line(text: str, limit: int = 160) -> str:
    """The first non-empty line of `text`, cut at `limit` characters."""
    line = next((line.strip() for line in str(text).splitlines() if line.strip()), "")
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


def _tidy(hint: str) -> str:
    """A hint as the learner sees it: one line, never empty, never a log."""
    hint = " ".join(str(hint).split()) if "Traceback" not in hint else _one_line(hint)
    if len(hint) > MAX_HINT:
        hint = hint[: MAX_HINT - 1].rstrip() + "…"
    return hint or "the check failed without saying why: run it again, and tell your tutor if it persists"


def _describe(error: BaseException, module) -> str:
    if isinstance(error, Fail):
        return _tidy(str(error))
    if isinstance(error, NotImplementedError):
        frame = traceback.extract_tb(error.__traceback__)[-1]
        return f"`{frame.name}` is not written yet (it raises NotImplementedError)"
    if isinstance(error, DeserializationError):
        return ("a job could not be read back with the JSON serializer (DeserializationError): "
                "create your Queue with serializer=JSONSerializer, as the store's queues are")
    message = _one_line(error)
    what = f"{type(error).__name__}: {message}" if message else type(error).__name__
    if isinstance(error, SyntaxError) and error.lineno:
        return f"your file does not load: {what} (line {error.lineno} of {Path(error.filename or '?').name})"
    if module is None:  # importing the learner's file failed
        return f"your file does not load: {what}"
    for frame in reversed(traceback.extract_tb(error.__traceback__)):
        if module is not None and frame.filename == getattr(module, "__file__", None):
            where = f"at line {frame.lineno} of {Path(frame.filename).name}"
            return f"your code raised {what} ({where})"
    return f"the check stopped on {what}"


def check_name(check) -> str:
    """A check's name: the first line of its docstring."""
    return (check.__doc__ or check.__name__).strip().splitlines()[0]


def run_exercise(exercise: str, solutions: bool | None = None, folder: Path | None = None,
                 first: int = 0, starting=None, finished=None, only: list[str] | None = None,
                 stop: int | None = None) -> list[Result]:
    """Run every check of `exercise` (from the `first`-th, up to the `stop`-th); never raises for a failing check.

    Graded: solutions/ (solutions mode), exercises/, or the exercise files in `folder`
    (default: $EBOOKSTORE_EXERCISES, e.g. a learner's submission, or exercises/).
    `starting(index)` and `finished(result)`, if given, are called as each check starts and ends
    (to follow and time the checks from another process). `only`: run just the checks whose
    function names are listed.
    """
    if exercise not in EXERCISES:
        raise ValueError(f"unknown exercise {exercise!r}: choose from {', '.join(EXERCISES)}")
    solutions = Settings.from_env().solutions if solutions is None else solutions
    results = []
    previous_tag = os.environ.get(processes.RUN_TAG)
    with tempfile.TemporaryDirectory(prefix=f"check-{exercise}-") as home:
        tag = new_tag(f"{os.environ.get('EBOOKSTORE_TEST_TAG_PREFIX', 'check')}-{exercise}")
        folder = folder or os.environ.get("EBOOKSTORE_EXERCISES")
        root = None
        # Processes the learner's code starts inherit our environment: give them the
        # tag, so that the clean-up below finds them too.
        os.environ[processes.RUN_TAG] = tag
        try:
            try:
                if folder and not solutions:
                    root = staged_folder(Path(folder), exercise, Path(home) / "submission")
                module = exercise_module(exercise, solutions, root)
            except FileNotFoundError as error:
                return [Result(exercise, "submitted", False, str(error), 0.0)]
            except Exception as error:  # a syntax error in the learner's file, say
                return [Result(exercise, "imports", False, _describe(error, None), 0.0)]
            for index, check in enumerate(CHECKS[exercise][first:stop], start=first):
                if only is not None and check.__name__ not in only:
                    continue
                if starting:
                    starting(index)
                context = Context(exercise, module, Path(home) / check.__name__, tag, root)
                started = time.perf_counter()
                try:
                    with context:  # the check's own store, in os.environ too, until it ends
                        check(context)
                    passed, hint = True, ""
                except Exception as error:
                    passed, hint = False, _describe(error, module)
                results.append(Result(exercise, check_name(check), passed, hint, time.perf_counter() - started))
                if finished:
                    finished(results[-1])
        finally:
            if previous_tag is None:
                os.environ.pop(processes.RUN_TAG, None)
            else:
                os.environ[processes.RUN_TAG] = previous_tag
    return results


SOLUTIONS_FOLDER = "--solutions"  # report_exercise's `folder` that grades solutions/


def report_exercise(exercise: str, folder: str, first: int, report_fd: int, stop: int | None = None) -> None:
    """The proctor's child: grade checks `first` to `stop` (exclusive; None: the last) of one exercise;
    one JSON line per event on `report_fd`.

    `folder` holds the learner's files, or is SOLUTIONS_FOLDER. Events: {"start": index} as a check starts,
    {"result": {…}} as it ends (see proctor.py, which reads them).
    """
    report = os.fdopen(report_fd, "w")

    def emit(**message):
        report.write(json.dumps(message) + "\n")
        report.flush()
    sent = []
    solutions = folder == SOLUTIONS_FOLDER
    results = run_exercise(exercise, solutions=solutions, folder=None if solutions else Path(folder), first=first,
                           stop=stop, starting=lambda index: emit(start=index),
                           finished=lambda result: sent.append(emit(result=dataclasses.asdict(result))))
    if not sent:  # the file is missing or does not import: one result says why
        for result in results:
            emit(result=dataclasses.asdict(result))
