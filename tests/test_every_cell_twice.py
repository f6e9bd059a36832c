"""Every code cell can run twice, beside a running `ebookstore up`: a learner presses Run again, or re-runs
a cell after editing an exercise, while the store they started in a terminal keeps running.

Each notebook runs in learner mode (untouched stubs) in one kernel, each code cell twice in a row: the cell,
the same cell again, then the next. One test per notebook, so that pytest-xdist spreads them over its
workers; each xdist worker has one `ebookstore up` that its notebooks run beside: each notebook must say so
in its first cell, stop none of the store's processes, and leave the store answering.
Then Interrupt: in the notebooks whose cells wait on workers and jobs, each cell is interrupted (SIGINT to
the kernel's process group, as JupyterLab's Interrupt does) while it runs, run again, and the notebook goes on.
"""
import os
import signal
import subprocess
import threading
import urllib.request
from pathlib import Path

import nbformat
import psutil
import pytest
from nbclient.exceptions import CellExecutionError

from ebookstore.runtime import processes
from tests.test_learner_paths import (EBOOKSTORE, NOTEBOOKS, assert_learner_run, client, home, learner_env,  # noqa: F401
                                      outputs, stubs)

NAMES = sorted(p.name for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def _processes_of(folder: Path) -> dict[int, psutil.Process]:
    return {p.pid: p for p in psutil.process_iter() if processes.environ(p).get(processes.RUN_TAG)
            and processes.environ(p).get("EBOOKSTORE_HOME", "").startswith(str(folder)) and not processes.gone(p)}


@pytest.fixture(scope="session")  # not "module": work-stealing interleaves modules, and each `up` costs seconds of CPU
def store_up(stubs):  # noqa: F811
    """`ebookstore up` in a state folder of this xdist worker; the notebooks share its EBOOKSTORE_HOME."""
    state = Path(os.environ["EBOOKSTORE_HOME"]) / "beside-up"
    state.mkdir(parents=True, exist_ok=True)
    env = learner_env(state, stubs)
    up = subprocess.run([EBOOKSTORE, "up"], env=env, capture_output=True, text=True, timeout=90)
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        yield state, env, set(_processes_of(state))
    finally:
        down = subprocess.run([EBOOKSTORE, "down"], env=env, capture_output=True, text=True, timeout=90)
        assert down.returncode == 0, down.stdout + down.stderr


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", NAMES, ids=lambda n: n[:2])
def test_every_code_cell_runs_twice_beside_ebookstore_up(store_up, name):
    state, env, store = store_up
    run = client(name)
    try:
        with run.setup_kernel(env=env):
            for index, cell in enumerate(run.nb.cells):
                if cell.cell_type == "code":
                    run.execute_cell(cell, index)
                    run.execute_cell(cell, index)  # raises CellExecutionError, naming the cell, if the second run fails
        assert_learner_run(run.nb)
        first = outputs(next(c for c in run.nb.cells if c.cell_type == "code"))
        if name != "00_start_here.ipynb":
            assert "`ebookstore up` is running" in first, first
        assert store <= set(_processes_of(state)), f"{name} stopped a process of `ebookstore up`"
        with urllib.request.urlopen(f"http://127.0.0.1:{os.environ['EBOOKSTORE_WEB_PORT']}/api/ebooks",
                                    timeout=5) as answer:
            assert answer.status == 200, f"the store no longer answers after {name}"
    finally:
        left = list(_processes_of(state / "notebooks").values())
        processes.stop(left, timeout=3)
    assert left == [], f"{name} left running: {processes.format_rows(processes.ps_rows(left))}"


def kernel_pid(run) -> int:
    probe = nbformat.v4.new_code_cell("import os; print(os.getpid())")
    run.nb.cells.append(probe)
    run.execute_cell(probe, len(run.nb.cells) - 1)
    run.nb.cells.pop()
    return int(outputs(probe))


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", ["07_signals_and_killing.ipynb", "12_reliability.ipynb"], ids=lambda n: n[:2])
def test_interrupting_a_waiting_cell_leaves_the_notebook_able_to_go_on(home, stubs, name):  # noqa: F811
    """Each cell but the checks is interrupted 0.6 s after it starts; if it was still running, it runs again."""
    run = client(name)
    interrupted = []
    with run.setup_kernel(env=learner_env(home, stubs)):
        group = os.getpgid(kernel_pid(run))
        for index, cell in enumerate(run.nb.cells):
            if cell.cell_type != "code":
                continue
            if cell.source.startswith("check("):
                run.execute_cell(cell, index)
                continue
            timer = threading.Timer(0.6, os.killpg, (group, signal.SIGINT))
            timer.start()
            try:
                run.execute_cell(cell, index)
            except CellExecutionError as error:
                assert "KeyboardInterrupt" in str(error), error  # failed for another reason than the Interrupt
                interrupted.append(index)
                run.execute_cell(cell, index)  # Run again, after the Interrupt: it must do its demo
            finally:
                timer.cancel()
        assert_learner_run(run.nb)
    assert len(interrupted) >= 3, "cells that wait were interrupted while they waited"
