"""The process runtime: run tags, whole-tree stops (the work-horse too), stop at exit."""
import os
import signal
import socket
import subprocess
import sys
import textwrap
import types

import psutil
import pytest

from ebookstore import queues
from ebookstore.course import specimens
from ebookstore.runtime import processes, supervisord
from ebookstore.runtime.processes import wait_until
from ebookstore.runtime import stack as stack_module
from ebookstore.runtime.stack import control_sockets
from tests import jobfuncs


def horse_of(worker):
    """The worker's work-horse: a child in its own process group."""
    return wait_until(lambda: processes.work_horse(worker), 10, what="a work-horse")


def test_horse_has_its_own_process_group_and_the_run_tag(settings, stack, redis):
    queues.get_queue("default", redis).enqueue(jobfuncs.nap, 30)
    # The worker itself, not the lowest PID tagged "worker": PIDs wrap, so its horse may have a lower one.
    worker = stack.worker("worker")
    horse = horse_of(worker)
    assert os.getpgid(horse.pid) == horse.pid != os.getpgid(worker.pid)
    assert processes.environ(horse)[processes.RUN_TAG] == stack.tag


def test_stop_finds_an_orphaned_horse_by_tag(settings, stack, redis):
    queues.get_queue("default", redis).enqueue(jobfuncs.nap, 30)
    # The worker itself, not the lowest PID tagged "worker": PIDs wrap, so its horse may have a lower one.
    worker = stack.worker("worker")
    horse = horse_of(worker)
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


# -- a name is one process: starting it again (a cell run twice) ---------------------------------------
SLEEP = [sys.executable, "-c", "import time, sys; time.sleep(30)"]


def test_starting_a_running_name_again_gives_it_back_and_says_so(settings, stack):
    said = []
    stack.say = said.append
    first = stack.start("sleeper", SLEEP)
    again = stack.start("sleeper", SLEEP)
    assert again.pid == first.pid and len(stack.processes("sleeper")) == 1
    assert len(said) == 1 and "already runs" in said[0] and str(first.pid) in said[0]
    other = stack.start("sleeper", SLEEP + ["another"])  # asked for with another command: replaced
    assert other.pid != first.pid and processes.gone(first) and stack.processes("sleeper") == [other]
    assert "another command" in said[1]


def test_an_interrupt_as_a_process_is_forked_leaves_nothing_running(stack, monkeypatch):
    # Jupyter's Interrupt (SIGINT) landing just after the fork, before the Stack has recorded the process: it
    # used to run on unrecorded, and a cell run again took it for one started elsewhere ("already runs (PID …):
    # using it") and waited for it to answer on another port (notebook 12's Redis demo, under the Interrupt test).
    real_popen = subprocess.Popen

    def popen_then_interrupt(*args, **kwargs):
        popen = real_popen(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGINT)  # Python raises KeyboardInterrupt at its next step: here
        return popen
    monkeypatch.setattr(stack_module.subprocess, "Popen", popen_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        stack.start("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"])
    monkeypatch.undo()
    assert processes.tagged(stack.tag, "sleeper") == [] and stack.running("sleeper") is None
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the Interrupt works as before


def test_a_name_started_again_is_ready_by_its_own_log_lines_not_the_last_ones(stack):
    """A cell run again starts the demo again: "ready" in the log must be the new process's."""
    slow_ready = [sys.executable, "-c", "import os, time; time.sleep(1); print('ready', os.getpid(), flush=True); "
                  "time.sleep(60)"]
    first = stack.start("demo", slow_ready, ready=lambda: "ready" in stack.log("demo"))
    assert stack.log("demo") == f"ready {first.pid}"
    stack.stop("demo")
    second = stack.start("demo", slow_ready, ready=lambda: "ready" in stack.log("demo"))
    assert stack.log("demo") == f"ready {second.pid}"  # the first one's line is in the file, not in log()
    assert f"ready {first.pid}" in stack.log_path("demo").read_text()


def test_a_killed_child_with_threads_is_reaped_once_it_counts_as_gone():
    """Killed, a threaded process shows as a zombie before it can be reaped (CI saw a worker given back so)."""
    code = ("import threading, time\nfor _ in range(8): threading.Thread(target=time.sleep, args=(60,), "
            "daemon=True).start()\nprint('up', flush=True); time.sleep(60)")
    for _ in range(30):  # before the fix, about 4 in 10 were still unreaped
        child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
        processes.track(child)  # as Stack.start does
        try:
            child.stdout.readline()
            proc = psutil.Process(child.pid)
            proc.kill()
            assert processes.wait_gone([proc], 5) == []
            assert child.poll() is not None, "gone, but a Popen still takes it for running"
            assert child.returncode == -signal.SIGKILL, "reaped, and its exit status kept"
        finally:
            child.kill()
            child.wait(5)
            child.stdout.close()


def test_a_worker_killed_with_sigkill_can_start_again_under_its_name(settings, stack, redis):
    """RQ keeps a SIGKILLed worker registered: a new one of that name would exit at once ("active worker")."""
    worker = stack.worker("w", ["default"], wait_ready=True)
    worker.kill()
    processes.wait_gone([worker], 5)
    assert redis.exists(f"rq:worker:{stack.tag}.w")
    again = stack.worker("w", ["default"], wait_ready=True)
    assert again.pid != worker.pid
    job = queues.get_queue("default", redis).enqueue(jobfuncs.record, "again")
    wait_until(lambda: job.get_status(refresh=True) == "finished", 10, what="the new worker to take a job")


def test_a_worker_stopped_and_started_again_is_ready_once_the_new_one_registered(settings, stack, redis):
    """A stopped worker's entry stays in Redis (with its death) for a minute: it must not pass for the new one."""
    key = f"rq:worker:{stack.tag}.w"
    first = stack.worker("w", ["default"], wait_ready=True)
    # (wait_ready waited for RQ's SIGTERM handler: stopped at once, the worker still notes its death.)
    stack.stop("w")
    assert redis.exists(key)
    again = stack.worker("w", ["default"], wait_ready=True)
    assert again.pid != first.pid
    assert not redis.hexists(key, "death") and int(redis.hget(key, "pid")) == again.pid


def test_a_worker_in_warm_shutdown_is_replaced_not_given_back(settings, stack, redis):
    worker = stack.worker("w", ["default"], wait_ready=True)
    queues.get_queue("default", redis).enqueue(jobfuncs.nap, 3)
    wait_until(lambda: processes.work_horse(worker), 10, what="the horse")
    worker.terminate()  # warm shutdown: it finishes its job and takes no other
    wait_until(lambda: redis.hexists(f"rq:worker:{stack.tag}.w", "shutdown_requested_date"), 5, what="the request")
    again = stack.worker("w", ["default"], wait_ready=True)
    assert again.pid != worker.pid and processes.gone(worker)
    job = queues.get_queue("default", redis).enqueue(jobfuncs.record, "fresh")
    wait_until(lambda: job.get_status(refresh=True) == "finished", 10, what="the fresh worker to take a job")


def test_a_course_redis_without_password_is_named_with_what_to_do(settings, tmp_path):
    """A state folder whose Redis an earlier version started, without a password: one line says what to do."""
    from ebookstore.runtime import redis_server
    from ebookstore.runtime.stack import Stack, StartError
    own = settings.replace(home=tmp_path / "old", external_redis_url=None, redis_port=processes.free_port())
    old = Stack(own, tag=f"{os.environ['EBOOKSTORE_TEST_TAG_PREFIX']}-old", stop_at_exit=False)
    new = Stack(own, tag=f"{os.environ['EBOOKSTORE_TEST_TAG_PREFIX']}-new", stop_at_exit=False)
    try:
        argv = [a for a in redis_server.argv(own) if not a.endswith("secret.conf")]
        old.start("redis", argv, port=own.redis_port, ready=lambda: processes.port_open(own.redis_port))
        try:
            new.redis()
        except StartError as error:
            assert "takes no password" in str(error) and "ebookstore down" in str(error)
            assert "\n" not in str(error)
        else:
            raise AssertionError("a Redis that takes no password must not be used")
    finally:
        new.stop(timeout=3)
        old.stop(timeout=3)


def test_a_port_claimed_by_another_live_process_is_not_chosen(tmp_path):
    port = processes.free_port()
    other = subprocess.run([sys.executable, "-c", f"from ebookstore.runtime import processes as p; print(p.claim_port({port}))"],
                           capture_output=True, text=True, timeout=30)
    assert other.stdout.strip() == "True", "a child may take what its parent chose for it"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom ebookstore.runtime import processes as p\n"
                               "print(p.free_port(), flush=True)\ntime.sleep(30)"], stdout=subprocess.PIPE, text=True,
                              start_new_session=True)
    try:
        claimed = int(holder.stdout.readline())
        # This process is the holder's parent, not its child: the claim stands against it.
        assert processes.claim_port(claimed) is False
        assert all(processes.free_port() != claimed for _ in range(20))
    finally:
        holder.kill()
        holder.wait(5)
    assert processes.claim_port(claimed) is True, "the claim of a process that exited is void"
    processes.release_port(claimed)


def test_free_port_never_gives_a_port_it_already_gave(monkeypatch):
    """Three calls in a row (a state folder's Redis, web and SMTP ports) give three ports, even from one process."""
    port = processes.free_port()
    monkeypatch.setattr(processes, "_below_ephemeral_range", lambda: range(port, port + 1))  # the only choice
    try:
        with pytest.raises(RuntimeError):
            processes.free_port()  # the one port of the range is taken: by this very process, a moment ago
    finally:
        processes.release_port(port)
    assert processes.free_port() == port, "released, it can be chosen again"
    processes.release_port(port)


def test_a_process_seen_gone_keeps_its_exit_status(stack):
    """processes.gone() reaps a Stack's child through its Popen: Stack.wait still tells SIGTERM from exit 0."""
    sleeper = stack.start("sleeper", ["sleep", "30"])
    sleeper.terminate()
    assert processes.wait_gone([sleeper], 5) == []
    assert stack.running("sleeper") is None
    assert stack.wait("sleeper", 1) == -signal.SIGTERM


# On SIGTERM it takes half a second to exit (a worker's warm shutdown, say): supervisord waits for it.
# (One line: supervisord's configuration holds the command.)
SLOW_EXIT = ("import signal, sys, time; "
             "signal.signal(signal.SIGTERM, lambda *_: (time.sleep(0.5), sys.exit(0))); "
             "print('ready', flush=True); time.sleep(60)")


def test_stop_nudges_a_stopping_supervisord_through_its_control_socket(settings, stack, monkeypatch):
    """While a supervisord stops, stop_redis_last connects to its control socket every 0.1 s (stack.nudged), so
    that it notices SIGTERM and each program's exit at once: at the path its configuration names, not the
    PATH.PID the kernel lists for it (supervisord binds that name, then renames it)."""
    slow = supervisord.Program("slow-exit", (sys.executable, "-c", SLOW_EXIT), priority=10, startsecs=0)
    keeper = supervisord.start(stack, [slow], kind="workers")
    log = stack.log_dir / "slow-exit.log"
    wait_until(lambda: log.exists() and "ready" in log.read_text(), 10, what="the program")
    path = str(supervisord.socket_path(settings.home, "workers"))
    assert control_sockets(keeper) == [path]
    reached = []

    class Recording(socket.socket):
        def connect(self, address):
            super().connect(address)
            reached.append(address)

    monkeypatch.setattr(stack_module, "socket", types.SimpleNamespace(AF_UNIX=socket.AF_UNIX, socket=Recording))
    assert keeper.pid in stack.stop()
    assert path in reached, "no nudge reached supervisord while it stopped (0.5 s at least)"
