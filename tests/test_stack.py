"""The process runtime: run tags, whole-tree stops (the work-horse too), stop at exit."""
import os
import subprocess
import sys
import textwrap

import psutil

from ebookstore import queues
from ebookstore.course import specimens
from ebookstore.runtime import processes
from ebookstore.runtime.processes import wait_until
from tests import jobfuncs


def horse_of(stack):
    """The worker's work-horse: a child in its own process group."""
    worker = stack.processes("worker")[0]
    return wait_until(lambda: processes.work_horse(worker), 10, what="a work-horse")


def test_horse_has_its_own_process_group_and_the_run_tag(settings, stack, redis):
    queues.get_queue("default", redis).enqueue(jobfuncs.nap, 30)
    stack.worker("worker")
    horse = horse_of(stack)
    worker = stack.processes("worker")[0]
    assert os.getpgid(horse.pid) == horse.pid != os.getpgid(worker.pid)
    assert processes.environ(horse)[processes.RUN_TAG] == stack.tag


def test_stop_finds_an_orphaned_horse_by_tag(settings, stack, redis):
    queues.get_queue("default", redis).enqueue(jobfuncs.nap, 30)
    stack.worker("worker")
    horse = horse_of(stack)
    worker = stack.processes("worker")[0]
    worker.kill()  # SIGKILL the worker alone: the horse lives on, re-parented
    wait_until(lambda: horse.ppid() != worker.pid, 5, what="re-parenting")
    assert horse.is_running() and horse in stack.processes()
    outcome = stack.stop()
    assert horse.pid in outcome
    assert processes.gone(horse)


def test_a_stack_stops_its_processes_at_interpreter_exit(settings):
    script = textwrap.dedent(f"""
        from pathlib import Path
        from ebookstore.config import Settings
        from ebookstore.runtime.stack import Stack
        stack = Stack(Settings.from_env(home=Path({str(settings.home)!r}), redis_port={processes.free_port()}),
                      tag={os.environ['EBOOKSTORE_TEST_TAG_PREFIX'] + '-atexit'!r})
        stack.redis()
        stack.worker("worker")
        print(len(stack.processes()))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) >= 2  # redis and the worker ran
    assert processes.tagged(os.environ["EBOOKSTORE_TEST_TAG_PREFIX"] + "-atexit") == []


def test_start_error_shows_the_log(settings, stack):
    try:
        stack.start("broken", [sys.executable, "-c", "import sys; print('cannot work'); sys.exit(3)"],
                    ready=lambda: False, timeout=5)
    except Exception as error:
        assert "exited with status 3" in str(error) and "cannot work" in str(error)
    else:
        raise AssertionError("a process that exits at once must not count as started")


def test_find_by_tag_name_and_port(stack):
    port = processes.free_port()
    server = specimens.listener(stack, port, f"{stack.tag}-findme")
    assert processes.tagged(stack.tag, f"listener-{stack.tag}-findme") == [server]
    assert processes.matching(rf"{stack.tag}-findme") == [server]
    assert processes.listener_pid(port) == server.pid


def test_ps_rows_show_state_letters(stack):
    sleeper = stack.start("sleeper", [sys.executable, "-c", "import time; time.sleep(30)"])
    wait_until(lambda: processes.ps_rows([sleeper])[0]["stat"] == "S", 5, what="sleep")
    sleeper.suspend()
    wait_until(lambda: processes.ps_rows([sleeper])[0]["stat"] == "T", 5, what="stop")
    assert processes.STATE_NAMES["T"] == "stopped"
    stack.stop("sleeper", timeout=2)  # a stopped process still gets SIGTERM handled (SIGCONT)
    assert processes.gone(sleeper)
    assert "STAT" in processes.format_rows(processes.ps_rows([psutil.Process()]))


def test_ebookstore_down_stops_schedulers_before_redis(settings, tmp_path):
    """Redis stopped after its workers keeps no scheduler lock in its append-only file."""
    from ebookstore.runtime import redis_server
    from ebookstore.runtime.stack import Stack, stop_everything
    own = settings.replace(home=tmp_path / "down", external_redis_url=None, redis_port=processes.free_port())
    stack = Stack(own, tag=f"{os.environ['EBOOKSTORE_TEST_TAG_PREFIX']}-down", stop_at_exit=False)
    try:
        stack.redis()
        stack.worker("worker", with_scheduler=True, wait_ready=True)
        connection = queues.connect(own)
        wait_until(lambda: list(connection.scan_iter("rq:scheduler-lock:*")), 10, what="the scheduler's locks")
        stop_everything(own.home, timeout=5)
        # Start the same Redis again by hand (a Stack would clear stale locks): what did it keep?
        stack.start("redis-again", redis_server.argv(own), ready=stack.ping)
        assert list(connection.scan_iter("rq:scheduler-lock:*")) == []
    finally:
        stack.stop(timeout=3)
