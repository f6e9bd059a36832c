"""Test-run set-up shared by tests/ and the notebooks (nbmake).

Before anything runs: a throwaway state folder and free ports, in the
environment, so that notebook kernels inherit them too and a test run never
touches the learner's var/ or a running `ebookstore up`. After everything ran:
no process that this run started may still be alive.
"""
import os
import shutil
import tempfile

import pytest

from ebookstore.course import forkserver
from ebookstore.runtime import processes

TAG_PREFIX = f"t{os.getpid()}"


def pytest_configure(config):
    home = tempfile.mkdtemp(prefix="ebookstore-test-")
    config._ebookstore_home = home
    os.environ.update({
        "EBOOKSTORE_HOME": home,
        "EBOOKSTORE_REDIS_PORT": str(processes.free_port()),
        "EBOOKSTORE_WEB_PORT": str(processes.free_port()),
        "EBOOKSTORE_SMTP_PORT": str(processes.free_port()),
        "EBOOKSTORE_TEST_TAG_PREFIX": TAG_PREFIX,
    })
    os.environ.pop("REDIS_URL", None)
    # nbmake's notebook kernels on Unix sockets, like the tests' own: see tests/kernels.py.
    import nbmake.nb_run
    from tests.kernels import IPCNotebookClient
    nbmake.nb_run.NotebookClient = IPCNotebookClient
    if os.environ.get("EBOOKSTORE_SOLUTIONS") != "1":
        os.environ.pop("EBOOKSTORE_SOLUTIONS", None)


def pytest_runtest_setup(item):
    # Notebooks run in solutions mode: their check cells grade solutions/ and fail the run on a ✗.
    if item.path.suffix == ".ipynb":
        os.environ["EBOOKSTORE_SOLUTIONS"] = "1"


def pytest_runtest_teardown(item):
    if item.path.suffix == ".ipynb":
        os.environ.pop("EBOOKSTORE_SOLUTIONS", None)


def pytest_sessionfinish(session, exitstatus):
    home = getattr(session.config, "_ebookstore_home", None)
    if home is None:
        return
    forkserver.stop_all()  # the proctor's fork server of this process (else stopped at exit)
    left = [p for p in _course_processes() if processes.environ(p).get("EBOOKSTORE_HOME", "").startswith(home)
            or processes.environ(p).get(processes.RUN_TAG, "").startswith(TAG_PREFIX)]
    left = processes.wait_gone(left, 3)  # exiting is not left running (a fork server whose kernel just ended)
    if left:
        rows = processes.format_rows(processes.ps_rows(left))
        print(f"\nFAIL: {len(left)} process(es) started by this test run are still running:\n{rows}")
        processes.stop(left, timeout=3)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    shutil.rmtree(home, ignore_errors=True)


def _course_processes():
    return [p for p in processes.psutil.process_iter() if processes.environ(p).get(processes.RUN_TAG)]


# Run first what takes longest, so that the parallel workers (pytest-xdist, `--dist load --maxschedchunk 1`:
# each worker holds at most two tests, and gets the next one in this order as it finishes one) finish
# together instead of one of them starting a minute-long test at the end. Nodeid prefixes, slowest first, as
# `make test`'s --durations measured them (2026-12-01: the first three 45-90 s, every other notebook's
# every-cell-twice run 10-40 s). Everything else keeps its order.
SLOW_FIRST = (
    "tests/test_every_cell_twice.py::test_every_code_cell_runs_twice_beside_ebookstore_up[13]",
    "tests/test_every_cell_twice.py::test_every_code_cell_runs_twice_beside_ebookstore_up[12]",
    "tests/test_learner_paths.py::test_notebooks_in_another_order",
    "tests/test_classroom_users.py",
    "tests/test_every_cell_twice.py",
    "tests/test_learner_paths.py",
    "notebooks/13",
    "notebooks/11",
    "tests/test_cli.py::test_up",
    "tests/test_backends.py::test_up",
    "tests/test_grade.py",
    "notebooks/",
    "tests/test_correct_answers.py",
    "tests/test_cli.py",
    "tests/test_graders.py",
)


def pytest_collection_modifyitems(session, config, items):
    def rank(item):
        return next((n for n, prefix in enumerate(SLOW_FIRST) if item.nodeid.startswith(prefix)), len(SLOW_FIRST))
    items.sort(key=rank)  # sort is stable: within a rank, the order of collection
