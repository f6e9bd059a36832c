"""Checks of exercise 09: the queue configuration file, weighted order, strict and weighted workers.

"Weighted" is a statistical property, so it is checked with enough draws to tell
it from the plausible wrong strategies — RQ's uniform random order, round-robin,
strict order — with an error rate far below 1 in 1,000: the worker class and
dequeue strategy of the learner's command (parsed by `rq worker`'s own option
parser) are asked for the order of the queues 2,000 times, in the grader's
process (real RQ code, no jobs needed; a real run would need ~160 jobs, over 3 s),
and the command then runs a few jobs for real.
"""
import os
import random
from collections import Counter

from rq.job import Job
from rq.utils import import_worker_class

from ebookstore import queues
from ebookstore.course.checks.common import Fail, job_outcome, short
from ebookstore.workers import rq_executable

DRAWS = 2000  # orders asked of the worker: weighted (25 % low first) lies > 7 standard deviations from 0 % and 50 %


def _config(ctx):
    text = ctx.learner("queue_config")()
    path = ctx.settings.home / "queues.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text if isinstance(text, str) else "")
    return path


def assigns_jobs_to_queues(ctx):
    """queue_config declares critical, default, low (3, 2, 1) and assigns each job"""
    path = _config(ctx)
    try:
        config = queues.load_config(path)
    except Exception as error:
        raise Fail(f"the configuration does not load as TOML: {short(error, 120) or type(error).__name__}. "
                   "Compare it with ebookstore/queues.toml") from None
    if config.names != ["critical", "default", "low"] or config.weights != {"critical": 3, "default": 2, "low": 1}:
        raise Fail(f"[queues] reads {config.weights}: critical = 3, default = 2, low = 1, in that order")
    expected = {"ebookstore.jobs.purchase_notification": "critical", "ebookstore.jobs.statistics_report": "low",
                "ebookstore.jobs.daily_statistics": "low"}
    wrong = {job: config.queue_for(job) for job in expected if config.queue_for(job) != expected[job]}
    if wrong:
        raise Fail(f"in [jobs], these go elsewhere: {wrong}. Who waits for which email?")


def orders_by_weight(ctx):
    """weighted_order puts a queue first in proportion to its weight"""
    weighted_order = ctx.learner("weighted_order")
    weights = {"critical": 3, "default": 2, "low": 1}
    rng = random.Random(42)
    draws = [weighted_order(dict(weights), rng) for _ in range(6000)]
    if any(not isinstance(order, list) or sorted(order) != ["critical", "default", "low"] for order in draws[:50]):
        bad = next(o for o in draws[:50] if not isinstance(o, list) or sorted(o) != ["critical", "default", "low"])
        raise Fail(f"each order holds every queue exactly once; got {bad!r}")
    again = random.Random(42)
    if [weighted_order(dict(weights), again) for _ in range(20)] != draws[:20]:
        raise Fail("the same rng seed gave different orders: shuffle with the rng you are given (rng.shuffle), "
                   "not the random module, so that a run can be repeated")
    firsts = Counter(order[0] for order in draws)
    for name, weight in (("critical", 3), ("default", 2), ("low", 1)):
        share = firsts[name] / len(draws)
        if abs(share - weight / 6) > 0.03:
            raise Fail(f"{name} came first {share:.0%} of the time; with weight {weight} of 6 it should be "
                       f"about {weight / 6:.0%}. Repeat each name `weight` times, shuffle, keep first occurrences")
    if len({tuple(o) for o in draws[:100]}) < 3:
        raise Fail("the order hardly varies: shuffle with the rng you are given")


def _command(ctx, weighted: bool) -> list[str]:
    label = "weighted" if weighted else "strict"
    argv = ctx.learner("worker_command")(rq_executable(), ctx.settings.redis_url, f"{ctx.stack.tag}.{label}", weighted)
    if not isinstance(argv, list) or "worker" not in argv:
        raise Fail("return the command as a list of strings, e.g. [rq, 'worker', …]")
    return argv


def _low_first_share(ctx, argv) -> float:
    """How often the worker of `argv` looks at low before critical (default empty), over DRAWS orders."""
    from rq.cli.workers import worker as rq_worker  # the `rq worker` command's own option parser

    try:
        options = rq_worker.make_context("worker", list(argv[argv.index("worker") + 1:])).params
        worker_class = import_worker_class(options["worker_class"])
    except Exception as error:
        raise Fail(f"rq worker does not accept your command: {short(error, 120)}") from None
    os.environ["EBOOKSTORE_QUEUES"] = str(_config(ctx))  # the weights a WeightedWorker reads (restored after the check)
    names = list(options["queues"]) or ["default"]
    worker = worker_class([queues.get_queue(n, ctx.redis) for n in names], connection=ctx.redis,
                          serializer=queues.SERIALIZER)
    worker._dequeue_strategy = options["dequeue_strategy"]  # as `rq worker` hands it to work()
    low = 0
    for _ in range(DRAWS):
        picked = next((q for q in worker._ordered_queues if q.name in ("critical", "low")), None)
        if picked is None:
            raise Fail(f"the worker reads the queues {names}: it needs critical, default and low")
        low += picked.name == "low"
        worker.reorder_queues(reference_queue=picked)  # what a worker does after each job
    return low / DRAWS


def _run(ctx, weighted, counts):
    redis = ctx.redis
    ids = []
    for name, n in counts.items():
        queue = queues.get_queue(name, redis)
        ids += [queue.enqueue("ebookstore.reports.period_bounds", "daily", description=name).id for _ in range(n)]
    label = "weighted" if weighted else "strict"
    argv = _command(ctx, weighted)
    ctx.stack.start(label, argv, env={"EBOOKSTORE_QUEUES": str(_config(ctx))}).wait(timeout=10)
    jobs = [Job.fetch(i, connection=redis, serializer=queues.SERIALIZER) for i in ids]
    left = [job for job in jobs if job.ended_at is None]
    if left:
        raise Fail(f"the {label} worker did not run every job ({len(left)} left): "
                   f"{job_outcome(left[0], ctx.stack.log(label, 200))}")
    return [job.description for job in sorted(jobs, key=lambda j: j.ended_at)]


def strict_worker_runs_critical_first(ctx):
    """a strict worker runs every critical job before any low one"""
    order = _run(ctx, False, {"low": 4, "critical": 4})  # a strict worker is deterministic: a few jobs tell
    if order != ["critical"] * 4 + ["low"] * 4:
        early = order[:4].count("low")
        raise Fail(f"the strict worker ran {early} low job(s) among the first 4, while critical ones waited: "
                   "RQ reads the queues in the order you list them, so list them most urgent first")


def weighted_worker_does_not_starve_low(ctx):
    """a weighted worker lets low jobs through while critical ones wait"""
    share = _low_first_share(ctx, _command(ctx, True))
    if share == 0:
        raise Fail("the weighted worker always looks at critical first, so low starves while critical jobs "
                   "wait: use ebookstore.workers.WeightedWorker (--worker-class)")
    if 0.4 <= share <= 0.6:
        raise Fail(f"the worker looked at low before critical {share:.0%} of the time, as if the queues had equal "
                   "weights: that is RQ's random or round-robin strategy. The weights 3:1 need "
                   "ebookstore.workers.WeightedWorker (--worker-class)")
    if not 0.18 <= share <= 0.32:
        raise Fail(f"the worker looked at low before critical {share:.0%} of the time; with weights 3:1 it "
                   "should be about 25%")
    _run(ctx, True, {"critical": 3, "low": 2})  # and the command runs for real, with the check's queue file


CHECKS = [assigns_jobs_to_queues, orders_by_weight, strict_worker_runs_critical_first,
          weighted_worker_does_not_starve_low]
