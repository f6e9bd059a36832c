"""A notebook's run (ebookstore/course/notebook.py): which state folder it takes, and what its clean-up ends.

Each test plays kernels as plain Python processes running the environment cell (`start_notebook`), as a
learner's second browser tab, a re-run of the environment cell, or a cell run after the clean-up cell would.
"""
import os
import subprocess
import sys
import textwrap

import psutil
import pytest

from ebookstore.config import PROJECT_ROOT
from ebookstore.runtime import processes


def kernel(home, code: str, *args: str, wait: bool = True):
    """A process that runs `code` as a notebook's cells would, with `home` as the kernel's state folder."""
    env = {**os.environ, "EBOOKSTORE_HOME": str(home), "EBOOKSTORE_REDIS_PORT": str(processes.free_port()),
           "EBOOKSTORE_WEB_PORT": str(processes.free_port()), "EBOOKSTORE_SMTP_PORT": str(processes.free_port())}
    env.pop(processes.RUN_TAG, None)
    argv = [sys.executable, "-c", textwrap.dedent(code), *args]
    if wait:
        return subprocess.run(argv, env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=90)
    return subprocess.Popen(argv, env=env, cwd=PROJECT_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def state_lines(output: str) -> list[str]:
    return [line.split()[1] for line in output.splitlines() if line.startswith("state ")]


def test_the_same_notebook_in_a_second_kernel_gets_a_folder_of_its_own(tmp_path):
    # Notebook 08's environment cell starts no process: the folder is held by the kernel's claim alone.
    first = kernel(tmp_path, """
        import sys
        from ebookstore.course.notebook import start_notebook, clean_up
        nb = start_notebook("08")
        sys.stdin.readline()          # the first tab stays open until told
        clean_up(nb)
        """, wait=False)
    try:
        processes.wait_until(lambda: (tmp_path / "notebooks" / "08" / "kernel").exists(), 30, what="the first claim")
        second = kernel(tmp_path, """
            from ebookstore.course.notebook import start_notebook, clean_up
            clean_up(start_notebook("08"))
            """)
        assert state_lines(second.stdout) == [str(tmp_path / "notebooks" / "08-2")], second.stdout + second.stderr
    finally:
        first.communicate("\n", timeout=60)
    third = kernel(tmp_path, """
        from ebookstore.course.notebook import start_notebook, clean_up
        clean_up(start_notebook("08"))
        """)  # the first tab cleaned up: its folder is free again
    assert state_lines(third.stdout) == [str(tmp_path / "notebooks" / "08")], third.stdout + third.stderr


def test_a_check_then_the_environment_cell_again_keeps_the_folder(tmp_path):
    run = kernel(tmp_path, """
        from ebookstore.course.notebook import start_notebook, check, clean_up
        nb = start_notebook("03")
        check("ex03", solutions=True)      # the grader's fork server now runs, with this folder in its environment
        clean_up(nb)
        clean_up(start_notebook("03"))     # Run All again
        """)
    assert run.returncode == 0, run.stdout + run.stderr
    assert state_lines(run.stdout) == [str(tmp_path / "notebooks" / "03")] * 2, run.stdout


def test_after_the_clean_up_cell_a_cell_that_starts_a_process_says_what_to_do(tmp_path):
    run = kernel(tmp_path, """
        from ebookstore.course.notebook import start_notebook, clean_up
        from ebookstore.runtime.stack import StartError
        nb = start_notebook("02")
        clean_up(nb)
        try:
            nb.redis()
        except StartError as error:
            print("refused:", error)
        """)
    assert "refused: " in run.stdout and "run the environment cell" in run.stdout, run.stdout + run.stderr
    left = processes.wait_gone([p for p in psutil.process_iter()
                                if processes.environ(p).get("EBOOKSTORE_HOME", "").startswith(str(tmp_path))], 3)
    assert left == [], processes.format_rows(processes.ps_rows(left))


@pytest.mark.parametrize("variable", ["REDISCLI_AUTH", "EBOOKSTORE_HOME"])
def test_the_clean_up_cell_puts_back_the_kernels_environment(tmp_path, variable):
    run = kernel(tmp_path, f"""
        import os
        before = os.environ.get("{variable}")
        from ebookstore.course.notebook import start_notebook, clean_up
        nb = start_notebook("02")
        during = os.environ.get("{variable}")
        clean_up(nb)
        print("during:", during is not None and during != before, "after:", os.environ.get("{variable}") == before)
        """)
    assert "during: True after: True" in run.stdout, run.stdout + run.stderr
