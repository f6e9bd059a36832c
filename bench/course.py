"""Course runtime: `python bench/course.py` (part of `make bench`).

Executes every notebook in solutions mode (as nbmake does in `make test`) and times it, then
times every exercise's checks as a learner runs them (`ebookstore check exNN`, one at a time),
then grading as a tutor does: one solved submission, and six with `--jobs 2`. Targets: the
series ≤ 90 s, each notebook ≤ 15 s; each check ≤ 3 s, each exercise ≤ 5 s; one submission
≤ 12 s, six ≤ 40 s. Prints a table, then one JSON line.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from ebookstore.config import PROJECT_ROOT
from ebookstore.course import grading
from ebookstore.runtime import processes

EBOOKSTORE = str(Path(sys.executable).parent / "ebookstore")


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
        started = time.perf_counter()  # as the learner waits for it: the proctor's child and all
        subprocess.run([EBOOKSTORE, "check", exercise, "--solutions"], capture_output=True, check=True)
        checks[exercise] = {"total_s": round(sum(r.seconds for r in results), 2),
                            "slowest_check_s": round(max(r.seconds for r in results), 2),
                            "ebookstore_check_s": round(time.perf_counter() - started, 2),
                            "all_pass": all(r.passed for r in results)}
    grade = {}
    for count, jobs in ((1, 1), (6, 2)):
        folders = []
        for n in range(count):
            folders.append(Path(home) / "submissions" / f"learner-{count}-{n}")
            shutil.copytree(PROJECT_ROOT / "solutions", folders[-1],
                            ignore=shutil.ignore_patterns("promises", "__*", "*.md"))
        started = time.perf_counter()
        subprocess.run([EBOOKSTORE, "grade", *map(str, folders), "--jobs", str(jobs)], capture_output=True, check=True)
        grade[f"{count} with --jobs {jobs}"] = round(time.perf_counter() - started, 1)
    shutil.rmtree(home, ignore_errors=True)

    total = sum(notebooks.values())
    print("notebooks, executed in solutions mode (target ≤ 15 s each, ≤ 90 s together)")
    for name, seconds in notebooks.items():
        print(f"  {name:<40}{seconds:>7.1f} s{'  ✗ over 15 s' if seconds > 15 else ''}")
    print(f"  {'whole series':<40}{total:>7.1f} s{'  ✗ over 90 s' if total > 90 else ''}")
    print("checks, solutions (target ≤ 3 s per check; ≤ 5 s per exercise, as `ebookstore check exNN` takes)")
    for exercise, c in checks.items():
        flag = ("" if c["slowest_check_s"] <= 3 else "  ✗ a check over 3 s") + \
            ("" if c["ebookstore_check_s"] <= 5 else "  ✗ the exercise over 5 s")
        print(f"  {exercise}  all checks {c['total_s']:>5.1f} s   slowest check {c['slowest_check_s']:>4.1f} s   "
              f"ebookstore check {c['ebookstore_check_s']:>4.1f} s{flag}")
    print("grading solved submissions (target: 1 in ≤ 12 s, 6 with --jobs 2 in ≤ 40 s)")
    for label, seconds in grade.items():
        print(f"  {label:<20}{seconds:>6.1f} s")
    result = {"bench": "course", "notebooks_s": notebooks, "series_s": round(total, 1), "checks": checks, "grade_s": grade}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
    sys.exit(0)
