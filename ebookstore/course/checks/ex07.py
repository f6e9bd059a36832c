"""Checks of exercise 07: stop a process gracefully; a worker script that handles SIGHUP and SIGTERM.

The processes stop_gracefully is tried on write down every SIGTERM they get, so
the check sees which signal came, in which order, and when: one exits on
SIGTERM, the other ignores it and needs SIGKILL. Two of them are not the grader's
children but grandchildren: one that its parent has the kernel reap at once, and one whose
parent never waits for it, so that it stays a zombie. An answer that can only wait for its
own children (os.waitpid), that counts only zombies as exited, or that counts a zombie as
still running (psutil's wait() on another's child, pid_exists) shows.

The worker runs as a real process with its stdout block-buffered, as when it writes to
a pipe (unflushed lines stay unseen), its stderr apart, and what run_worker returned
written down: every output of the promise is observed.
"""
import json
import signal
import sys
import time

from ebookstore.course import specimens
from ebookstore.course.checks.common import Fail, last_error
from ebookstore.runtime import processes
from ebookstore.runtime.processes import wait_until

# A parent that starts a signal_logger and lives on, its child nobody else's to wait for. It ignores
# SIGCHLD, so the kernel reaps the child the moment it exits (`man 2 wait`, NOTES): the child is never a
# zombie, not even for the instant a busy parent would take to call wait() - whatever the machine's load.
REAPER = ("import signal, subprocess, sys, time\n"
          "signal.signal(signal.SIGCHLD, signal.SIG_IGN)\n"
          "subprocess.Popen([sys.executable, '-c', *sys.argv[1:]])\n"
          "time.sleep(60)\n")
# A parent that starts a signal_logger and never waits for it: once the child exits it stays a zombie
# (exited, not reaped) until this parent ends. Nobody but its parent could reap it.
NEGLECTER = ("import subprocess, sys, time\n"
             "child = subprocess.Popen([sys.executable, '-c', *sys.argv[1:]])\n"
             "time.sleep(60)\n")

# Runs the learner's run_worker as `python -m exercises.ex07_…` would, but with stdout block-buffered
# (PYTHONUNBUFFERED or not), stderr into a file of its own, and the returned value written down.
# The file `started` is created once Python is up and the learner's module imported: the check times the
# first item from there (starting Python can take seconds on a busy machine; that is not the learner's code).
# SIGHUP and SIGTERM start with their default actions, as in a terminal, whoever started the grader: an ignored
# signal is inherited through exec (under `nohup`, SIGHUP would not kill a worker that has no handler for it).
WORKER = ("import importlib, io, os, signal, sys\n"
          "from pathlib import Path\n"
          "signal.signal(signal.SIGHUP, signal.SIG_DFL)\n"
          "signal.signal(signal.SIGTERM, signal.SIG_DFL)\n"
          "module, config, seconds, errors, returned, started = sys.argv[1:7]\n"
          "os.dup2(os.open(errors, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), 2)\n"
          "sys.stdout = io.TextIOWrapper(io.BufferedWriter(io.FileIO(1, 'w', closefd=False), 8192))\n"
          "learner = importlib.import_module(module)\n"
          "Path(started).touch()\n"
          "status = learner.run_worker(Path(config), float(seconds))\n"
          "sys.stdout.flush()\n"
          "Path(returned).write_text(repr(status))\n"
          "sys.exit(status if isinstance(status, int) else 3)\n")


def _grandchild_logger(ctx, marker, parent_script=REAPER):
    """A signal_logger whose parent (not us) runs `parent_script`: REAPER reaps it at once, NEGLECTER never does.

    Returns (parent, the logger)."""
    name = f"signals-{marker}"
    argv = [sys.executable, "-c", parent_script, specimens.SIGNAL_LOGGER, "0", "exit", marker]
    parent = ctx.stack.start(name, argv, ready=lambda: "ready" in ctx.stack.log(name))
    return parent, parent.children()[0]


def _stop(ctx, pid, timeout):
    started = time.monotonic()
    try:
        outcome = ctx.learner("stop_gracefully")(pid, timeout)
    except ChildProcessError:
        raise Fail("stop_gracefully raised ChildProcessError: os.waitpid only waits for your own children. The "
                   "process may be anyone's: poll it with psutil, and count it gone once it is a zombie or no "
                   "longer exists") from None
    except Exception as error:
        if type(error).__name__ == "NoSuchProcess":
            raise Fail("stop_gracefully raised NoSuchProcess: its parent reaped it as soon as it exited, so it no "
                       "longer exists. A process that is gone has exited too, not only a zombie") from None
        raise
    return outcome, time.monotonic() - started


def stops_a_polite_process(ctx):
    """stop_gracefully: a process that exits on SIGTERM is "terminated", quickly"""
    proc = specimens.signal_logger(ctx.stack, "polite")  # our child: a zombie until we reap it
    _, reaped = _grandchild_logger(ctx, "reaped")  # another's child: gone as soon as it exits
    _, neglected = _grandchild_logger(ctx, "neglected", NEGLECTER)  # another's child: a zombie once it exits
    for marker, target in (("polite", proc), ("reaped", reaped), ("neglected", neglected)):
        outcome, took = _stop(ctx, target.pid, 2.0)
        if not processes.gone(target):
            raise Fail("the process still runs after stop_gracefully returned")
        if not specimens.sigterms(ctx.stack, marker):
            raise Fail("the process never got SIGTERM: it was killed outright, with no chance to finish its work. "
                       "Ask politely first (proc.terminate()), SIGKILL only if that does not work")
        if took > 1.0:
            raise Fail(f"the process exited at once on SIGTERM, yet stop_gracefully took {took:.1f} s to notice: "
                       "poll often, and count a zombie (exited, not yet reaped by its parent) as exited")
        if outcome != "terminated":
            raise Fail(f"it exited on SIGTERM, yet you returned {outcome!r}: return 'terminated' when SIGTERM was "
                       "enough")


def kills_a_stubborn_process(ctx):
    """stop_gracefully: a process that ignores SIGTERM is "killed" after the timeout"""
    proc = specimens.signal_logger(ctx.stack, "stubborn", stubborn=True)  # ignores the polite request
    timeout = 0.8
    outcome, took = _stop(ctx, proc.pid, timeout)
    if not processes.gone(proc):
        raise Fail("a process that ignores SIGTERM still runs: escalate, after the timeout SIGKILL it (proc.kill())")
    terms = specimens.sigterms(ctx.stack, "stubborn")
    if not terms:
        raise Fail("the process was killed without getting SIGTERM first: send SIGTERM, wait the timeout, "
                   "and only then SIGKILL")
    if outcome != "killed":
        raise Fail(f"it needed SIGKILL, yet you returned {outcome!r}")
    if not timeout - 0.05 <= took <= timeout + 1.2:
        raise Fail(f"with timeout {timeout} s the stop took {took:.2f} s: wait the timeout you are given for "
                   "SIGTERM to work, no longer and no shorter")


def worker_handles_hup_and_term(ctx):
    """the worker script reloads on SIGHUP and finishes its item on SIGTERM"""
    home = ctx.settings.home
    home.mkdir(parents=True, exist_ok=True)
    config, errors, returned = home / "worker.json", home / "worker.stderr", home / "worker.returned"
    started = home / "worker.started"
    config.write_text(json.dumps({"label": "alpha"}))
    module = ctx.module.__name__
    proc = ctx.stack.start("signals-worker", [sys.executable, "-c", WORKER, module, str(config), "0.2",
                                              str(errors), str(returned), str(started)])
    log = lambda: ctx.stack.log("signals-worker", 200)  # noqa: E731
    stderr = lambda: errors.read_text(errors="replace") if errors.exists() else ""  # noqa: E731
    patience = max(3.0, ctx.seconds_left(8))  # Python's start on this machine, leaving 8 s for the rest of the check
    try:
        wait_until(lambda: started.exists() or processes.gone(proc), patience, interval=0.02, what="Python to start")
    except TimeoutError:
        raise Fail(f"python -m {module} did not reach run_worker within {patience:.0f} s: the machine is very busy, "
                   "or your module does slow work when it is imported (keep that inside functions)") from None
    try:
        wait_until(lambda: "alpha item 1" in log() or not proc.is_running() or processes.gone(proc), 3,
                   what="the first item")
    except TimeoutError:
        if "alpha item 1" in stderr():
            raise Fail("your item lines go to stderr: print them to stdout (plain print), with flush=True") from None
        raise Fail(f"no 'alpha item 1' line on stdout within 3 s of calling run_worker(CONFIG, 0.2): print "
                   "'<label> item <n>' after each item, with flush=True (a pipe holds unflushed lines back)") from None
    if "alpha item 1" not in log():
        if "NotImplementedError" in stderr():
            raise Fail("`run_worker` is not written yet (it raises NotImplementedError)")
        raise Fail(f"the worker (python -m {module} CONFIG) ended at once, on "
                   f"{last_error(stderr()) or 'no error: it printed no item'}")
    if log().splitlines()[0] != "ready":
        raise Fail("the first line on stdout must be 'ready', printed once the signal handlers are installed: "
                   "whoever starts the worker waits for it before sending signals")
    config.write_text(json.dumps({"label": "beta"}))
    proc.send_signal(signal.SIGHUP)
    try:
        wait_until(lambda: "beta item" in log() or processes.gone(proc), 2, what="the reload")
    except TimeoutError:
        raise Fail("after SIGHUP the items should say 'beta': re-read the configuration") from None
    if processes.gone(proc):
        raise Fail("SIGHUP killed the worker (that is SIGHUP's default action): install a handler")
    lines = log().splitlines()
    if "reloaded" not in lines:
        raise Fail("print 'reloaded' when you re-read the configuration")
    if any(line.startswith("alpha item") for line in lines[lines.index("reloaded"):]):
        raise Fail("after 'reloaded' an item still said 'alpha': use the label you just read for every later item")
    seen = log().count(" item ")
    proc.send_signal(signal.SIGTERM)
    try:
        wait_until(lambda: processes.gone(proc), 2, what="the worker to exit")
    except TimeoutError:
        raise Fail("2 s after SIGTERM the worker still runs: finish the current item, then stop") from None
    lines = log().splitlines()
    status = ctx.stack._popens["signals-worker"].wait(timeout=2)
    if status != 0 and not returned.exists():
        raise Fail(f"after SIGTERM the worker exited with status {status}, and run_worker never returned: "
                   "handle SIGTERM with a flag your loop reads, then return 0")
    if log().count(" item ") <= seen or (lines or [""])[-1] != "bye":
        raise Fail("on SIGTERM finish the item you are on (its line is printed), then print 'bye'")
    numbers = [int(line.rsplit(" ", 1)[1]) for line in lines if " item " in line and line.rsplit(" ", 1)[1].isdigit()]
    if numbers != list(range(1, len(numbers) + 1)):
        raise Fail(f"the items were numbered {numbers}: count them 1, 2, 3 … over the worker's whole life, "
                   "a reload does not start again at 1")
    if not returned.exists():
        raise Fail("run_worker ended the process itself (sys.exit) instead of returning: return 0, the exit "
                   "status, and let the __main__ block hand it to sys.exit")
    if returned.read_text() != "0":
        raise Fail(f"run_worker returned {returned.read_text()} after SIGTERM: return 0, the exit status "
                   "(the __main__ block hands it to sys.exit)")


CHECKS = [stops_a_polite_process, kills_a_stubborn_process, worker_handles_hup_and_term]
