"""Every grader check fails on the untouched stub and passes on the solution; no check hangs.

How long each check takes (≤ 3 s each, ≤ 5 s an exercise) is measured by `make bench`
(bench/course.py), not here: on a machine busy with this suite's other tests a time says little.

"The untouched stub" is made from the solution (tests/stubs.py), not read from exercises/: a learner
who has solved ex04 in their working copy still gets a passing suite. The committed stubs are
compared with the made ones where they are still untouched.
"""
import importlib
import inspect
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from ebookstore.course import grading, proctor
from ebookstore.course.grading import CHECKS
from tests.stubs import stub_from_solution

EXERCISES = list(grading.EXERCISES)
EBOOKSTORE = str(Path(sys.executable).parent / "ebookstore")


def committed(path: Path) -> str:
    """The file as committed (git's index), not as a learner may have edited it since."""
    relative = path.relative_to(grading.PROJECT_ROOT)
    shown = subprocess.run(["git", "show", f":{relative}"], cwd=grading.PROJECT_ROOT, capture_output=True, text=True)
    return shown.stdout if shown.returncode == 0 else path.read_text()


def test_every_exercise_has_checks_a_stub_and_a_solution():
    assert set(CHECKS) == set(grading.EXERCISES)
    for exercise, module in grading.EXERCISES.items():
        assert (grading.PROJECT_ROOT / "exercises" / f"{module}.py").exists(), exercise
        solution = importlib.import_module(f"solutions.{module}")
        assert [n for n, _ in inspect.getmembers(solution, inspect.isfunction) if not n.startswith("_")], exercise


@pytest.mark.parametrize("exercise", EXERCISES)
def test_the_committed_stub_is_its_solution_with_the_bodies_left_out(exercise):
    name = f"{grading.EXERCISES[exercise]}.py"
    stub = committed(grading.PROJECT_ROOT / "exercises" / name)
    expected = stub_from_solution((grading.PROJECT_ROOT / "solutions" / name).read_text())
    if stub != expected and stub.count("raise NotImplementedError") < expected.count("raise NotImplementedError"):
        pytest.skip(f"exercises/{name} holds your own work (committed): compared only while untouched")
    assert stub == expected, "same names, signatures, docstrings and constants as the solution; bodies raise"


@pytest.mark.parametrize("exercise", EXERCISES)
def test_every_check_fails_on_the_stub(exercise, tmp_path):
    stub = stub_from_solution((grading.PROJECT_ROOT / "solutions" / f"{grading.EXERCISES[exercise]}.py").read_text())
    folder = tmp_path / "submission"
    folder.mkdir()
    (folder / f"{grading.EXERCISES[exercise]}.py").write_text(stub)
    results = grading.run_exercise(exercise, solutions=False, folder=folder)
    assert len(results) == len(CHECKS[exercise])
    passed = [r.name for r in results if r.passed]
    assert passed == [], f"checks that pass on the untouched stub cannot fail: {passed}"
    assert all(r.hint for r in results)


@pytest.mark.parametrize("exercise", EXERCISES)
def test_every_check_passes_on_the_solution(exercise):
    results = grading.run_exercise(exercise, solutions=True)
    failed = [(r.name, r.hint) for r in results if not r.passed]
    assert failed == []
    assert len(results) == len(CHECKS[exercise])


def test_cli_exit_status_follows_the_checks(tmp_path):
    learner_env = {**os.environ, "EBOOKSTORE_SOLUTIONS": "0"}
    (tmp_path / "ex01_why_background_jobs.py").write_text(
        stub_from_solution((grading.PROJECT_ROOT / "solutions" / "ex01_why_background_jobs.py").read_text()))
    learner = subprocess.run([EBOOKSTORE, "check", "ex01", "--exercises", str(tmp_path)], capture_output=True,
                             text=True, timeout=60, env=learner_env)
    assert learner.returncode == 1 and "✗ ex01" in learner.stdout and "hint:" in learner.stdout
    assert "Traceback" not in learner.stdout + learner.stderr
    tutor = subprocess.run([EBOOKSTORE, "check", "ex01", "--solutions"], capture_output=True, text=True, timeout=60)
    assert tutor.returncode == 0 and "✗" not in tutor.stdout
    summary = subprocess.run([EBOOKSTORE, "check", "ex01", "ex03", "--solutions"], capture_output=True, text=True,
                             timeout=120)
    assert summary.returncode == 0 and "progress:" in summary.stdout and summary.stdout.count("✓ ex") >= 2


def test_notebook_check_prints_hints_for_learners_and_raises_in_solutions_mode(capsys, monkeypatch, tmp_path):
    (tmp_path / "ex01_why_background_jobs.py").write_text(
        stub_from_solution((grading.PROJECT_ROOT / "solutions" / "ex01_why_background_jobs.py").read_text()))
    monkeypatch.setenv("EBOOKSTORE_EXERCISES", str(tmp_path))
    assert proctor.check("ex01", solutions=False) is False  # a learner sees hints, not a traceback
    out = capsys.readouterr().out
    assert "hint:" in out and out.rstrip().splitlines()[-1].startswith("Not yet:")
    # In solutions mode a ✗ must fail the notebook run: here the solutions' checks get no time at all.
    with pytest.raises(AssertionError):
        proctor.check("ex12", solutions=True, timeout=0.01)
    assert "did not finish within 0.01 s" in capsys.readouterr().out


HANGING = """
import os, signal, socket, subprocess, time

def stopwatch(func, *args, **kwargs):
    \"\"\"Deaf to SIGINT and SIGTERM, forks a child into a session of its own, then loops forever.\"\"\"
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    subprocess.Popen(["sleep", "313.75"], start_new_session=True)
    while True:
        pass

def inline_purchase(conn, settings, buyer_id, ebook_id):
    \"\"\"Waits for a peer that never speaks: a socket read without a timeout.\"\"\"
    server = socket.create_server(("127.0.0.1", 0))
    peer = socket.create_connection(server.getsockname())
    return peer.recv(1)
"""


def _sleepers():
    return [p for p in psutil.process_iter(["cmdline"]) if (p.info["cmdline"] or [])[-1:] == ["313.75"]]


def test_a_check_never_hangs_whatever_the_learners_code_does(capsys, monkeypatch, tmp_path):
    (tmp_path / "ex01_why_background_jobs.py").write_text(HANGING)
    monkeypatch.setenv("EBOOKSTORE_EXERCISES", str(tmp_path))
    started = time.monotonic()
    assert proctor.check("ex01", solutions=False, timeout=2) is False
    seconds = time.monotonic() - started
    lines = capsys.readouterr().out.splitlines()
    marks = [line for line in lines if line.startswith(("✓", "✗"))]
    assert len(marks) == len(CHECKS["ex01"]) and all(m.startswith("✗") for m in marks), lines
    assert sum("did not finish within 2 s" in line for line in lines) == len(CHECKS["ex01"]), lines
    assert seconds < len(CHECKS["ex01"]) * (2 + 5), f"three checks of 2 s each took {seconds:.1f} s"
    assert _sleepers() == [], "the learner's child in a session of its own is still running"
    # The terminal says the same, and ends with the same summary line as the notebook.
    run = subprocess.run([EBOOKSTORE, "check", "ex01", "--exercises", str(tmp_path)], capture_output=True,
                         text=True, timeout=60, env={**os.environ, "EBOOKSTORE_CHECK_TIMEOUT": "2"})
    assert run.returncode == 1 and run.stdout.count("did not finish within 2 s") == len(CHECKS["ex01"]), run.stdout
    assert run.stdout.rstrip().splitlines()[-1].startswith("Not yet:") and _sleepers() == []


def grade_source(tmp_path, monkeypatch, exercise, source):
    """Grade `source` as the learner's exercise file (in a throwaway exercises/ package)."""
    package = tmp_path / "exercises"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / f"{grading.EXERCISES[exercise]}.py").write_text(source)
    monkeypatch.setattr(grading, "PROJECT_ROOT", tmp_path)
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    for name in [m for m in sys.modules if m == "exercises" or m.startswith("exercises.")]:
        monkeypatch.delitem(sys.modules, name)
    return {r.name: r for r in grading.run_exercise(exercise, solutions=False)}


def solution_source(exercise):
    return (Path(grading.PROJECT_ROOT) / "solutions" / f"{grading.EXERCISES[exercise]}.py").read_text()


def test_a_broken_exercise_file_gives_one_line_not_a_traceback(tmp_path, monkeypatch):
    results = grade_source(tmp_path, monkeypatch, "ex01", "def stopwatch(:\n")
    assert list(results) == ["imports"] and "SyntaxError" in results["imports"].hint


def test_ex04_catches_an_enqueue_inside_the_transaction(tmp_path, monkeypatch):
    wrong = solution_source("ex04").replace(
        "    return store.buy(conn, buyer_id, ebook_id,\n"
        "                     after_commit=lambda purchase: critical.enqueue(purchase_notification, purchase[\"id\"]))",
        "    with store.transaction(conn):\n"
        "        cursor = conn.execute(\"INSERT INTO purchases (buyer_id, ebook_id, price_cents, commission_cents,\"\n"
        "                              \" created_at) VALUES (?, ?, 100, 80, '2026')\", (buyer_id, ebook_id))\n"
        "        critical.enqueue(purchase_notification, cursor.lastrowid)  # too early\n"
        "    return store.get_purchase(conn, cursor.lastrowid)")
    assert "too early" in wrong
    results = grade_source(tmp_path, monkeypatch, "ex04", wrong)
    after_commit = results["the job is enqueued after the commit, and never for a failed purchase"]
    assert not after_commit.passed and "COMMIT" in after_commit.hint


def test_ex03_catches_a_pickled_job(tmp_path, monkeypatch):
    wrong = solution_source("ex03").replace(
        'return Queue("default", connection=redis, serializer=JSONSerializer).enqueue(price_tag, ebook_id)',
        'return Queue("default", connection=redis).enqueue(price_tag, ebook_id)')
    results = grade_source(tmp_path, monkeypatch, "ex03", wrong)
    json_check = results['enqueue_price_tag puts price_tag(ebook_id) on "default", as JSON']
    assert not json_check.passed and "JSONSerializer" in json_check.hint


# A busy machine (a class server, a loaded CI runner) is slow to start a worker and slow to end it: the
# checks that run the learner's worker command wait for it as long as the check may take, and judge only what
# it does (a worker waiting on empty queues has no --burst), never how soon. Here the command is the solution's
# behind a shell that waits before it starts the worker, or after it ends, longer than the checks once allowed
# (6 s for ex09's jobs, 2 s for ex02's exit); graded through the proctor, with a class's 15 s per check.
SLOW_WORKER = """

_quick_command = worker_command


def worker_command(*args, **kwargs):
    argv = _quick_command(*args, **kwargs)
    return ["sh", "-c", 'sleep {before}; "$@"; status=$?; sleep {after}; exit $status', "slow-worker", *argv]
"""


def _graded_with_a_slow_worker(tmp_path, exercise, check, before, after):
    folder = tmp_path / "submission"
    folder.mkdir()
    source = solution_source(exercise) + SLOW_WORKER.format(before=before, after=after)
    (folder / f"{grading.EXERCISES[exercise]}.py").write_text(source)
    [result] = proctor.grade_exercise(exercise, folder, timeout=15, only=[check])
    return result


@pytest.mark.parametrize("exercise, check, before, after", [
    ("ex02", "worker_command_runs_a_job", 0, 2.5),
    ("ex09", "strict_worker_runs_critical_first", 6.5, 0),
    ("ex09", "weighted_worker_does_not_starve_low", 6.5, 0)])
def test_a_slow_worker_is_waited_for_not_judged(exercise, check, before, after, tmp_path):
    result = _graded_with_a_slow_worker(tmp_path, exercise, check, before, after)
    assert result.passed, result.hint
    assert result.seconds >= before + after  # the slow shell really ran


def test_a_worker_that_never_exits_gets_the_checks_hint_before_the_proctors_limit(tmp_path):
    # It runs its jobs, then lingers without waiting on Redis: only the check's time tells it from a slow exit.
    result = _graded_with_a_slow_worker(tmp_path, "ex02", "worker_command_runs_a_job", 0, 100)
    assert not result.passed and "--burst" in result.hint and "did not finish" not in result.hint, result.hint


def test_ex02_catches_a_redis_without_persistence(tmp_path, monkeypatch):
    wrong = solution_source("ex02").replace('"--appendonly", "yes", ', "")
    results = grade_source(tmp_path, monkeypatch, "ex02", wrong)
    redis_check = results["start_redis: 127.0.0.1 only, the given port and folder, append-only"]
    assert not redis_check.passed and "append-only" in redis_check.hint


def test_ex12_catches_a_job_without_a_ledger(tmp_path, monkeypatch):
    wrong = solution_source("ex12").replace(
        '            if conn.execute("SELECT 1 FROM deliveries WHERE key = ?", (key,)).fetchone():\n'
        '                continue\n', "")
    assert "SELECT 1 FROM deliveries" not in wrong
    results = grade_source(tmp_path, monkeypatch, "ex12", wrong)
    twice = results["run twice, each email still arrives once"]
    assert not twice.passed and "deliveries" in twice.hint
