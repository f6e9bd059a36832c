"""Checks of exercise 07: stop a process gracefully; a worker script that handles SIGHUP and SIGTERM.

The processes stop_gracefully is tried on write down every SIGTERM they get, so
the check sees which signal came, in which order, and when: one exits on
SIGTERM, the other ignores it and needs SIGKILL.
"""
import json
import signal
import sys
import time

from ebookstore.course import specimens
from ebookstore.course.checks.common import Fail, last_error
from ebookstore.runtime import processes
from ebookstore.runtime.processes import wait_until


def stops_a_polite_process(ctx):
    """stop_gracefully: a process that exits on SIGTERM is "terminated", quickly"""
    proc = specimens.signal_logger(ctx.stack, "polite")
    started = time.monotonic()
    outcome = ctx.learner("stop_gracefully")(proc.pid, 2.0)
    took = time.monotonic() - started
    if not processes.gone(proc):
        raise Fail("the process still runs after stop_gracefully returned")
    if not specimens.sigterms(ctx.stack, "polite"):
        raise Fail("the process never got SIGTERM: it was killed outright, with no chance to finish its work. "
                   "Ask politely first (proc.terminate()), SIGKILL only if that does not work")
    if took > 1.0:
        raise Fail(f"the process exited at once on SIGTERM, yet stop_gracefully took {took:.1f} s to notice: poll "
                   "often, and count a zombie (exited, not yet reaped by its parent) as exited")
    if outcome != "terminated":
        raise Fail(f"it exited on SIGTERM, yet you returned {outcome!r}: return 'terminated' when SIGTERM was enough")


def kills_a_stubborn_process(ctx):
    """stop_gracefully: a process that ignores SIGTERM is "killed" after the timeout"""
    proc = specimens.signal_logger(ctx.stack, "stubborn", stubborn=True)  # ignores the polite request
    started = time.monotonic()
    outcome = ctx.learner("stop_gracefully")(proc.pid, 0.5)
    took = time.monotonic() - started
    if not processes.gone(proc):
        raise Fail("a process that ignores SIGTERM still runs: escalate, after the timeout SIGKILL it (proc.kill())")
    terms = specimens.sigterms(ctx.stack, "stubborn")
    if not terms:
        raise Fail("the process was killed without getting SIGTERM first: send SIGTERM, wait the timeout, "
                   "and only then SIGKILL")
    if outcome != "killed":
        raise Fail(f"it needed SIGKILL, yet you returned {outcome!r}")
    if not 0.45 <= took <= 2.0:
        raise Fail(f"with timeout 0.5 s the stop took {took:.2f} s: wait the timeout for SIGTERM to work, no longer")


def worker_handles_hup_and_term(ctx):
    """the worker script reloads on SIGHUP and finishes its item on SIGTERM"""
    config = ctx.settings.home / "worker.json"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(json.dumps({"label": "alpha"}))
    module = ctx.module.__name__
    proc = ctx.stack.start("signals-worker", [sys.executable, "-m", module, str(config), "0.2"])
    log = lambda: ctx.stack.log("signals-worker", 200)  # noqa: E731
    try:
        wait_until(lambda: "alpha item 1" in log() or not proc.is_running() or processes.gone(proc), 3,
                   what="the first item")
    except TimeoutError:
        raise Fail(f"no 'alpha item 1' line within 3 s of starting python -m {module} CONFIG 0.2: print "
                   "'<label> item <n>' after each item, with flush=True") from None
    if "alpha item 1" not in log():
        if "NotImplementedError" in log():
            raise Fail("`run_worker` is not written yet (it raises NotImplementedError)")
        raise Fail(f"the worker (python -m {module} CONFIG) ended at once, on "
                   f"{last_error(log()) or 'no error: it printed no item'}")
    config.write_text(json.dumps({"label": "beta"}))
    proc.send_signal(signal.SIGHUP)
    try:
        wait_until(lambda: "beta item" in log() or processes.gone(proc), 2, what="the reload")
    except TimeoutError:
        raise Fail("after SIGHUP the items should say 'beta': re-read the configuration") from None
    if processes.gone(proc):
        raise Fail("SIGHUP killed the worker (that is SIGHUP's default action): install a handler")
    if "reloaded" not in log():
        raise Fail("print 'reloaded' when you re-read the configuration")
    seen = log().count(" item ")
    proc.send_signal(signal.SIGTERM)
    try:
        wait_until(lambda: processes.gone(proc), 2, what="the worker to exit")
    except TimeoutError:
        raise Fail("2 s after SIGTERM the worker still runs: finish the current item, then stop") from None
    lines = log().splitlines()
    status = ctx.stack._popens["signals-worker"].wait(timeout=2)
    if status != 0:
        raise Fail(f"after SIGTERM the worker exited with status {status}; a clean stop exits 0: "
                   "handle SIGTERM instead of letting it kill the process")
    if log().count(" item ") <= seen or (lines or [""])[-1] != "bye":
        raise Fail("on SIGTERM finish the item you are on (its line is printed), then print 'bye'")


CHECKS = [stops_a_polite_process, kills_a_stubborn_process, worker_handles_hup_and_term]
