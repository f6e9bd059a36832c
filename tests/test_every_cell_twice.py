"""Every code cell can run twice: a learner presses Run again, or re-runs a cell after editing an exercise.

Each notebook runs in learner mode (untouched stubs) in one kernel, each code cell twice in a row: the cell,
the same cell again, then the next. One test per notebook, so that pytest-xdist spreads them over its workers.
Then Interrupt: in the notebooks whose cells wait on workers and jobs, each cell is interrupted (SIGINT to
the kernel's process group, as JupyterLab's Interrupt does) while it runs, run again, and the notebook goes on.
"""
import os
import signal
import threading

import nbformat
import pytest
from nbclient.exceptions import CellExecutionError

from tests.test_learner_paths import NOTEBOOKS, assert_learner_run, client, home, learner_env, outputs, stubs  # noqa: F401

NAMES = sorted(p.name for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", NAMES, ids=lambda n: n[:2])
def test_every_code_cell_runs_twice(home, stubs, name):  # noqa: F811
    run = client(name)
    with run.setup_kernel(env=learner_env(home, stubs)):
        for index, cell in enumerate(run.nb.cells):
            if cell.cell_type == "code":
                run.execute_cell(cell, index)
                run.execute_cell(cell, index)  # raises CellExecutionError, naming the cell, if the second run fails
        assert_learner_run(run.nb)


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
