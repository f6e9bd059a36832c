"""Course runtime: `python bench/course.py` (part of `make bench`).

Executes every notebook in solutions mode (as nbmake does in `make test`) and times it,
then times every exercise's checks. Targets: the series ≤ 90 s, each notebook ≤ 20 s,
each check ≤ 3 s. Prints a table, then one JSON line.
"""
import json
import os
import shutil
import sys
import tempfile
import time

import nbformat
from nbclient import NotebookClient

from ebookstore.config import PROJECT_ROOT
from ebookstore.course import grading
from ebookstore.runtime import processes


def main() -> dict:
    home = tempfile.mkdtemp(prefix="bench-course-")
    os.environ.update({  # the kernels inherit these: a state folder and ports of their own
        "EBOOKSTORE_HOME": home, "EBOOKSTORE_SOLUTIONS": "1",
        "EBOOKSTORE_REDIS_PORT": str(processes.free_port()), "EBOOKSTORE_WEB_PORT": str(processes.free_port()),
        "EBOOKSTORE_SMTP_PORT": str(processes.free_port()),
    })
    os.environ.pop("REDIS_URL", None)
    notebooks = {}
    for path in sorted((PROJECT_ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        started = time.perf_counter()
        NotebookClient(nb, timeout=60, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()
        notebooks[path.stem] = round(time.perf_counter() - started, 2)
    checks = {}
    for exercise in grading.EXERCISES:
        results = grading.run_exercise(exercise, solutions=True)
        checks[exercise] = {"total_s": round(sum(r.seconds for r in results), 2),
                            "slowest_check_s": round(max(r.seconds for r in results), 2),
                            "all_pass": all(r.passed for r in results)}
    shutil.rmtree(home, ignore_errors=True)

    total = sum(notebooks.values())
    print("notebooks, executed in solutions mode (target ≤ 20 s each, ≤ 90 s together)")
    for name, seconds in notebooks.items():
        print(f"  {name:<40}{seconds:>7.1f} s{'  ✗ over 20 s' if seconds > 20 else ''}")
    print(f"  {'whole series':<40}{total:>7.1f} s{'  ✗ over 90 s' if total > 90 else ''}")
    print("checks, solutions (target ≤ 3 s per check)")
    for exercise, c in checks.items():
        flag = "" if c["slowest_check_s"] <= 3 else "  ✗ a check over 3 s"
        print(f"  {exercise}  all checks {c['total_s']:>5.1f} s   slowest check {c['slowest_check_s']:>4.1f} s{flag}")
    result = {"bench": "course", "notebooks_s": notebooks, "series_s": round(total, 1), "checks": checks}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
    sys.exit(0)
