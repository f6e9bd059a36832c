"""What the checks of every exercise share: `Fail` and a worker run.

A check is a function of a `grading.Context` (the learner's module, settings,
a Stack, a Redis of the check's own) that raises `Fail(hint)` when the
learner's code is not there yet. Its docstring's first line is its name.
"""


class Fail(AssertionError):
    """A check did not pass; the message is the hint shown to the learner."""


def run_worker(ctx, name="worker"):
    """Run a real non-forking RQ worker until the queues are empty; return its log."""
    ctx.stack.worker(name, burst=True, simple=True).wait(timeout=10)
    return ctx.stack.log(name, 40)
