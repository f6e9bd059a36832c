"""Exercise 13 — other job libraries: the inline backend (Active Job's `:inline`), so the purchase flow runs without Redis.

Notebook: notebooks/13_other_job_libraries.ipynb · check: check("ex13") or `ebookstore check ex13`
"""
import json
from pkgutil import resolve_name


def run_inline(job: str, args: list):
    """The inline backend: run the job at once, here in the caller, as a worker would; return what it returns.

    `job` is the job function's import path, "package.module.function" (what a queue stores: e.g.
    "ebookstore.jobs.statistics_report"). `args` are its positional arguments. A queue would carry
    them as JSON, so the job gets what a worker would get after that JSON round trip (a tuple
    arrives as a list), and arguments that JSON cannot carry (a set, a datetime, an object) raise
    TypeError before the job runs: a job that works inline must also work queued. The job's own
    exception reaches the caller unchanged (not caught, not wrapped). Nothing here uses Redis.
    """
    raise NotImplementedError  # your code here
