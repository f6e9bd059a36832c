"""The notebooks off CI's straight path: as a learner runs them, in real kernels (nbclient).

(Every notebook in learner mode beside a running `ebookstore up`, each cell twice, and Run All again after
the clean-up where a notebook changes the kernel's environment: tests/test_every_cell_twice.py.) A kernel
killed mid-notebook and the notebook run again; an unusual order; two notebooks at once. Each scenario has a state folder of its own under the test run's, so the run's final check
finds anything they leave behind.
"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import psutil
import pytest

from ebookstore.config import PROJECT_ROOT
from ebookstore.course import grading
from ebookstore.runtime import processes
from tests.kernels import IPCNotebookClient
from tests.stubs import stub_from_solution

NOTEBOOKS = PROJECT_ROOT / "notebooks"
EBOOKSTORE = str(Path(sys.executable).parent / "ebookstore")


def learner_env(home: Path, stubs: Path) -> dict:
    """A learner's environment: their state folder, the untouched stubs graded, not solutions mode."""
    env = {k: v for k, v in os.environ.items() if k not in ("EBOOKSTORE_SOLUTIONS", processes.RUN_TAG)}
    env.update(EBOOKSTORE_HOME=str(home), EBOOKSTORE_EXERCISES=str(stubs))
    return env


@pytest.fixture(scope="session")
def stubs(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("stubs")
    for module in grading.EXERCISES.values():
        (folder / f"{module}.py").write_text(stub_from_solution((PROJECT_ROOT / "solutions" / f"{module}.py").read_text()))
    return folder


@pytest.fixture
def home(request) -> Path:
    # Under the test run's state folder: the run's last check finds whatever a scenario leaves running.
    path = Path(os.environ["EBOOKSTORE_HOME"]) / "learner-paths" / request.node.name.replace("/", "_")
    path.mkdir(parents=True)
    yield path
    left = [p for p in psutil.process_iter() if processes.environ(p).get(processes.RUN_TAG)
            and processes.environ(p).get("EBOOKSTORE_HOME", "").startswith(str(path)) and not processes.gone(p)]
    # Exiting is not left running: a kernel that took over 2.5 s to shut down got SIGTERM from jupyter_client,
    # and its fork server exits when it reads the end of the kernel's socket, a moment later.
    left = processes.wait_gone(left, 3)
    processes.stop(left, timeout=3)
    assert left == [], f"left running: {processes.format_rows(processes.ps_rows(left))}"


def client(name: str) -> IPCNotebookClient:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    return IPCNotebookClient(nb, timeout=60, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}})


def outputs(cell) -> str:
    text = []
    for out in cell.get("outputs", []):
        if out.output_type == "stream":
            text.append(out.text)
        elif out.output_type in ("execute_result", "display_data"):
            text.append(out.get("data", {}).get("text/plain", ""))
        elif out.output_type == "error":
            text.append(f"{out.ename}: {out.evalue}")
    return "".join(text)


def check_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code" and c.source.startswith("check(")]


def assert_learner_run(nb) -> None:
    """No cell failed (nbclient raises on one); each check cell printed ✗ lines with hints, and nothing else."""
    for cell in check_cells(nb):
        text = outputs(cell)
        assert "✗" in text and "hint:" in text and "Not yet" in text, text
        assert not [o for o in cell.outputs if o.output_type in ("execute_result", "error")], text


def test_a_killed_kernel_leaves_nothing_for_the_next_run(home, stubs):
    env = learner_env(home, stubs)
    first = client("07_signals_and_killing.ipynb")
    with first.setup_kernel(env=env):
        cells = first.nb.cells
        stop_at = next(i for i, c in enumerate(cells) if "w_critical = " in c.source or "w-critical" in c.source)
        for index in range(stop_at + 1):
            first.execute_cell(cells[index], index)
        probe = nbformat.v4.new_code_cell("import os; print(os.getpid())")
        cells.append(probe)
        first.execute_cell(probe, len(cells) - 1)
        kernel = psutil.Process(int(outputs(probe)))
        orphans = [p for p in psutil.process_iter() if processes.environ(p).get(processes.RUN_TAG)
                   and processes.environ(p).get("EBOOKSTORE_HOME", "").startswith(str(home))]
        assert len(orphans) >= 3, "the notebook had Redis and workers running"
        kernel.send_signal(signal.SIGKILL)  # as a crash, or "Restart" after a hang, does
        kernel.wait(5)
        time.sleep(0.5)
        assert all(p.is_running() for p in orphans), "its processes outlive the kernel (own sessions)"
    second = client("07_signals_and_killing.ipynb")
    second.execute(env=env)
    assert_learner_run(second.nb)
    note = outputs(next(c for c in second.nb.cells if c.cell_type == "code"))
    assert "lost its kernel and left processes behind" in note, note
    assert not [p for p in orphans if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def test_notebooks_in_another_order(home, stubs):
    env = learner_env(home, stubs)
    for name in ("11_final_integration.ipynb", "10_errors_and_retries.ipynb", "03_creating_jobs.ipynb"):
        run = client(name)
        run.execute(env=env)
        assert_learner_run(run.nb)


def test_two_notebooks_at_once(home, stubs, tmp_path):
    """03 runs while 02 starts, finishes and cleans up beside it: 03 must not notice."""
    env = learner_env(home, stubs)
    script = ("import sys, nbformat\nfrom tests.kernels import IPCNotebookClient\n"
              "nb = nbformat.read(sys.argv[1], as_version=4)\n"
              "IPCNotebookClient(nb, timeout=60, kernel_name='python3', resources={'metadata': {'path': sys.argv[2]}})"
              ".execute()\nnbformat.write(nb, sys.argv[3])\n")
    runs = {}
    for name in ("03_creating_jobs.ipynb", "02_redis_and_rq_setup.ipynb"):
        runs[name] = subprocess.Popen([sys.executable, "-c", script, str(NOTEBOOKS / name), str(NOTEBOOKS),
                                       str(tmp_path / name)], env=env, cwd=PROJECT_ROOT, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True, start_new_session=True)
        time.sleep(1.5)
    for name, proc in runs.items():
        output, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, f"{name} failed:\n{output[-3000:]}"
        assert_learner_run(nbformat.read(tmp_path / name, as_version=4))
