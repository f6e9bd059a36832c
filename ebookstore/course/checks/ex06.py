"""Checks of exercise 06: ps aux | grep, in Python, and the names of process states.

`grep` finds itself because the pattern is in its own command line. The check
recreates that: it runs list_processes in a script whose command line holds the
pattern too, so an answer that does not leave out its own process lists it.
"""
import contextlib
import functools
import json
import secrets
import sys
import time

import psutil

from ebookstore.course import specimens
from ebookstore.course.checks.common import Fail, last_error
from ebookstore.runtime.processes import wait_until

# Runs the learner's list_processes(pattern) with the pattern in its own command line, like grep.
LISTER = ("import json, sys\n"
          "from {module} import list_processes\n"
          "print('ROWS ' + json.dumps(list_processes(sys.argv[1]), default=str), flush=True)\n")


def names_states(ctx):
    """state_name names R, S, D, T, Z (and ignores STAT's extra letters)"""
    state_name = ctx.learner("state_name")
    names = {"R": "running", "S": "sleeping", "T": "stopped", "Z": "zombie"}
    flags = ["", "s", "+", "l", "<", "N", "L", "s+", "sl", "l+", "<s", "Ns", "sl+", "<l", "N+"]
    for letter in "RSTZD":
        for extra in flags:
            stat = letter + extra
            try:
                got = state_name(stat)
            except (KeyError, IndexError, ValueError) as error:
                raise Fail(f"state_name({stat!r}) raised {type(error).__name__}: only the first letter of STAT is the "
                           "state; the letters after it are flags (s session leader, + foreground, l threads, < N "
                           "priority, L locked pages)") from None
            if letter == "D":
                if not isinstance(got, str) or "sleep" not in got or got == "sleeping":
                    raise Fail("D is the *uninterruptible* sleep (waiting for disk or network I/O), not plain "
                               "sleeping")
            elif got != names[letter]:
                raise Fail(f"state_name({stat!r}) returned {got!r}, expected {names[letter]!r}: see STATE CODES in "
                           "`man ps` (only the first letter counts)")


def lists_matching_processes(ctx):
    """list_processes finds exactly the matching processes, not itself"""
    marker = f"ex06-{secrets.token_hex(3)}"
    sleeper = specimens.sleeper(ctx.stack, marker)
    specimens.sleeper(ctx.stack, "someone-else")  # must not be listed
    ctx.learner("list_processes")
    pattern = marker + "(-[a-z]+)?"  # a regular expression, found in the lister's own command line too
    lister = ctx.stack.start("lister", [sys.executable, "-c", LISTER.format(module=ctx.module.__name__), pattern])
    try:
        lister.wait(timeout=5)
    except psutil.TimeoutExpired:
        raise Fail("list_processes took over 5 s: measure %CPU over one short interval for all processes "
                   "together, not one interval per process") from None
    output = ctx.stack.log("lister", 200)
    found = [line[5:] for line in output.splitlines() if line.startswith("ROWS ")]
    if not found:
        if "NotImplementedError" in output:
            raise Fail("`list_processes` is not written yet (it raises NotImplementedError)")
        raise Fail(f"list_processes({marker!r}), run as a script, stopped on {last_error(output) or 'an error'}")
    rows = json.loads(found[-1])
    pids = sorted(row.get("pid") for row in rows) if isinstance(rows, list) else rows
    if lister.pid in (pids if isinstance(pids, list) else []):
        raise Fail(f"list_processes found its own process (PID {lister.pid}), whose command line holds the pattern "
                   "too, as grep finds itself: leave out os.getpid()")
    if pids != [sleeper.pid]:
        raise Fail(f"list_processes({pattern!r}) found PIDs {pids}; only PID {sleeper.pid} runs with a command "
                   "line that matches it: the pattern is a regular expression (re.search), matched anywhere in the "
                   "full command line")
    row = rows[0]
    missing = {"pid", "cpu", "mem", "stat", "command"} - set(row)
    if missing:
        raise Fail(f"each row needs the keys pid, cpu, mem, stat, command; missing {sorted(missing)}")
    types = {"pid": int, "cpu": (int, float), "mem": (int, float), "stat": str, "command": str}
    wrong = [f"{key} is {type(row[key]).__name__}" for key, kind in types.items()
             if not isinstance(row[key], kind) or isinstance(row[key], bool)]
    if wrong:
        raise Fail(f"{', '.join(wrong)}: pid is an int, cpu and mem are numbers (floats), stat and command are "
                   "strings")
    if marker not in row["command"] or "python" not in row["command"]:
        raise Fail("command is the full command line (proc.cmdline() joined), as ps aux shows it")
    if not 0 < row["mem"] < 100:
        raise Fail(f"mem is %MEM, the share of the machine's memory (proc.memory_percent()); got {row['mem']}")


def shows_each_state(ctx):
    """list_processes shows S, R, T and Z, and %CPU of a busy process"""
    marker = f"ex06-{secrets.token_hex(3)}"
    procs = {"S": specimens.sleeper(ctx.stack, marker), "R": specimens.spinner(ctx.stack, marker),
             "T": specimens.stopped(ctx.stack, marker)}
    parent, procs["Z"] = specimens.zombie(ctx.stack, marker)
    procs["S "] = parent  # the zombie's parent sleeps, without ever calling wait()
    # The grader's own process getting ready: as long as a busy machine needs (ctx.seconds_left), not a fixed time.
    wait_until(lambda: procs["R"].cpu_times().user > 0.3, max(3.0, ctx.seconds_left(5)), what="the spinner to spin")
    spun, started = sum(procs["R"].cpu_times()[:2]), time.monotonic()
    rows = {row["pid"]: row for row in ctx.learner("list_processes")(marker)}
    # The spinner's real share of a CPU while list_processes ran: on a machine grading a class it gets less than
    # a whole one. Half of that (at most 20 %) is asked for; psutil's first call says 0.0, always below it.
    share = (sum(procs["R"].cpu_times()[:2]) - spun) / max(time.monotonic() - started, 0.001) * 100
    for stat, proc in procs.items():
        row = rows.get(proc.pid)
        if row is None:
            hint = " (a zombie has no command line left: match its name)" if stat == "Z" else ""
            raise Fail(f"PID {proc.pid} (state {stat.strip()}) is missing{hint}")
        if row["stat"][:1] != stat.strip():
            raise Fail(f"PID {proc.pid} is in state {stat.strip()}, you said {row['stat']!r}: turn proc.status() into "
                       "the letter ps shows (STATE CODES in `man ps`: stopped is T, not S)")
    if rows[procs["R"].pid]["cpu"] < max(1.0, min(20.0, share / 2)):
        raise Fail(f"a process spinning in a loop shows {rows[procs['R'].pid]['cpu']} %CPU: psutil's "
                   "cpu_percent() returns 0.0 on its first call for a process; measure over an interval")


# A parent that starts short-lived children with the marker in their command line and reaps each at once:
# processes that list_processes sees come and go while it measures. The children are shells (`sh -c
# 'sleep 0.05; :' MARKER`, which stays a shell: the `;` keeps it from exec'ing sleep), started in a few
# milliseconds even on a busy machine, so that there are always some, each living only 50 ms.
# Every 20 ms a new marked shell that lives about 50 ms: a few are always alive, each ends soon. SIGCHLD
# ignored: the kernel removes an ended child at once, with no zombie left for a busy churner to reap — a
# zombie still answers psutil's questions, so an answer that lets NoSuchProcess escape would pass.
CHURNER = ("import signal, subprocess, sys, time\n"
           "signal.signal(signal.SIGCHLD, signal.SIG_IGN)\n"
           "end = time.monotonic() + 30\n"
           "while time.monotonic() < end:\n"
           "    subprocess.Popen(['sh', '-c', 'sleep 0.05; :', sys.argv[1]])\n"
           "    time.sleep(0.02)\n")


def survives_processes_that_end(ctx):
    """list_processes leaves out a process that ends while it looks, without an error"""
    marker = f"ex06-{secrets.token_hex(3)}"
    churner = ctx.stack.start("churner", [sys.executable, "-c", CHURNER, marker])
    list_processes = ctx.learner("list_processes")
    def a_marked_child():
        for child in churner.children():
            with contextlib.suppress(psutil.Error):  # it may end as we look, too
                if marker in " ".join(child.cmdline()):
                    return True
        return False
    wait_until(a_marked_child, max(3.0, ctx.seconds_left(8)), what="a child")
    # One process ends at a moment chosen for it, whatever the machine's load: SIGKILLed (and reaped) right after
    # list_processes first asks for its %CPU, i.e. after finding it and before the measurement's second reading.
    victim = ctx.stack.start("victim", [sys.executable, "-c", "import time; time.sleep(60)", marker])
    for scan in range(6):
        with _ends_when_measured(victim.pid if scan == 0 else None, lambda: ctx.stack.stop("victim", timeout=0)):
            try:
                rows = list_processes(marker)
            except psutil.Error as error:
                raise Fail(f"list_processes raised {type(error).__name__} for a process that ended while it looked: "
                           "processes come and go, so leave out one that is gone (catch psutil.NoSuchProcess "
                           "around every question you ask a process)") from None
        if churner.pid not in {row["pid"] for row in rows}:
            raise Fail(f"PID {churner.pid}, which runs the whole time with {marker!r} in its command line, is missing")


@contextlib.contextmanager
def _ends_when_measured(pid: int | None, end):
    """Within the block, the process `pid` ends (`end()`) as soon as psutil has first measured its CPU use."""
    real = {name: getattr(psutil.Process, name) for name in ("cpu_percent", "cpu_times")}
    ended = []

    def measured(name):
        @functools.wraps(real[name])  # psutil's oneshot() needs what its methods carry (cache_activate …)
        def method(self, *args, **kwargs):
            value = real[name](self, *args, **kwargs)
            if self.pid == pid and not ended:
                ended.append(pid)  # first: end() may ask psutil about processes too
                end()
            return value
        return method
    for name in real:
        setattr(psutil.Process, name, measured(name))
    try:
        yield
    finally:
        for name, method in real.items():
            setattr(psutil.Process, name, method)


CHECKS = [names_states, lists_matching_processes, shows_each_state, survives_processes_that_end]
