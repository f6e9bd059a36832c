"""The proctor's fork server: each check graded in a fresh child forked from it, nothing shared between
two children, and the server itself stopped with the process that started it (or started again if killed)."""
import os
import signal
import subprocess
import sys
import textwrap

import psutil
import pytest

from ebookstore.config import PROJECT_ROOT
from ebookstore.course import forkserver, grading, proctor
from ebookstore.runtime import processes

SOLUTION = (PROJECT_ROOT / "solutions" / f"{grading.EXERCISES['ex01']}.py").read_text()


def submission(folder, source):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{grading.EXERCISES['ex01']}.py").write_text(source)
    return folder


def servers_of(home) -> list[psutil.Process]:
    return [p for p in psutil.process_iter() if processes.environ(p).get(processes.PROCESS_NAME) == "forkserver"
            and processes.environ(p).get("EBOOKSTORE_HOME") == str(home) and not processes.gone(p)]


def test_what_one_child_changes_does_not_reach_the_next(tmp_path):
    # A learner's file that, at import, breaks the modules the server has loaded for every child.
    breaking = "import time, json\ntime.monotonic = lambda: 0.0\njson.dumps = None\n" + SOLUTION
    broken = proctor.grade_exercise("ex01", submission(tmp_path / "a", breaking))
    assert not all(r.passed for r in broken), [r.line() for r in broken]  # its stopwatch measured nothing
    fine = proctor.grade_exercise("ex01", submission(tmp_path / "b", SOLUTION))
    assert all(r.passed for r in fine), [r.line() for r in fine]


def test_a_child_that_dies_is_reported_with_its_exit_status(tmp_path):
    results = proctor.grade_exercise("ex01", submission(tmp_path, "import os\nos._exit(3)\n"))
    assert results and all("exit status 3" in r.hint for r in results), [r.line() for r in results]


def test_a_killed_fork_server_is_started_again(tmp_path):
    proctor.grade_exercise("ex01", submission(tmp_path / "a", SOLUTION))
    killed = [s.process for s in forkserver._servers.values()]
    assert killed, "the proctor grades with a fork server"
    for process in killed:
        process.send_signal(signal.SIGKILL)
        process.wait(5)
    again = proctor.grade_exercise("ex01", submission(tmp_path / "b", SOLUTION))
    assert all(r.passed for r in again), [r.line() for r in again]
    assert all(s.process.poll() is None for s in forkserver._servers.values())


def test_the_fork_server_ends_with_the_process_that_started_it(tmp_path):
    home = tmp_path / "home"
    grade = textwrap.dedent("""
        import os, sys
        from ebookstore.course import forkserver, proctor
        results = proctor.grade_exercise("ex01", None, solutions=True)
        print(all(r.passed for r in results), *[s.process.pid for s in forkserver._servers.values()], flush=True)
        if sys.argv[1] == "killed":
            os.kill(os.getpid(), 9)
    """)
    for how in ("exits", "killed"):
        env = {**os.environ, "EBOOKSTORE_HOME": str(home)}
        run = subprocess.run([sys.executable, "-c", grade, how], env=env, capture_output=True, text=True,
                             timeout=60, cwd=PROJECT_ROOT)
        passed, *servers = run.stdout.split()
        assert passed == "True" and len(servers) == 1, run.stdout + run.stderr
        left = processes.wait_gone(servers_of(home), 5)
        assert left == [], f"after the grading process {how}: {processes.format_rows(processes.ps_rows(left))}"


def test_without_a_fork_server_the_child_is_started_afresh(tmp_path, monkeypatch):
    monkeypatch.setattr(forkserver, "fork", lambda *args: None)  # as when the server cannot start
    fine = proctor.grade_exercise("ex01", submission(tmp_path / "a", SOLUTION))
    assert all(r.passed for r in fine), [r.line() for r in fine]
    died = proctor.grade_exercise("ex01", submission(tmp_path / "b", "import os\nos._exit(3)\n"))
    assert all("exit status 3" in r.hint for r in died), [r.line() for r in died]


def test_an_interrupt_before_the_childs_pid_came_still_stops_what_it_started(monkeypatch):
    # What the child started carries the grading's run tag: found by it when the child's PID never arrived.
    started = []

    def interrupted(args, env, output_fd, report_fd):
        started.append(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], env=env,
                                        start_new_session=True))
        raise KeyboardInterrupt  # Interrupt in JupyterLab, while the fork server was asked for a child
    monkeypatch.setattr(proctor, "_start_child", interrupted)
    try:
        with pytest.raises(KeyboardInterrupt):
            proctor.grade_exercise("ex01", None, solutions=True)
        assert started[0].poll() is not None, "what the interrupted grading started still runs"
    finally:
        started[0].kill()
