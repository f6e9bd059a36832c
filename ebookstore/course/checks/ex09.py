"""Checks of exercise 09: the queue configuration file, weighted order, strict and weighted workers."""
import random
from collections import Counter

from rq.job import Job

from ebookstore import queues
from ebookstore.course.checks.common import Fail
from ebookstore.workers import rq_executable


def _config(ctx):
    path = ctx.settings.home / "queues.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(ctx.learner("queue_config")())
    return path


def assigns_jobs_to_queues(ctx):
    """queue_config declares critical, default, low (3, 2, 1) and assigns each job"""
    try:
        config = queues.load_config(_config(ctx))
    except Exception as error:
        raise Fail(f"the file does not load: {error}") from None
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
    rng = random.Random(42)
    draws = [weighted_order({"critical": 3, "default": 2, "low": 1}, rng) for _ in range(6000)]
    if any(sorted(order) != ["critical", "default", "low"] for order in draws[:50]):
        raise Fail(f"each order holds every queue exactly once; got {draws[0]}")
    firsts = Counter(order[0] for order in draws)
    for name, weight in (("critical", 3), ("default", 2), ("low", 1)):
        share = firsts[name] / len(draws)
        if abs(share - weight / 6) > 0.03:
            raise Fail(f"{name} came first {share:.0%} of the time; with weight {weight} of 6 it should be "
                       f"about {weight / 6:.0%}. Repeat each name `weight` times, shuffle, keep first occurrences")
    if len({tuple(o) for o in draws[:100]}) < 3:
        raise Fail("the order hardly varies: shuffle with the rng you are given")


def _run(ctx, weighted, counts):
    redis = ctx.redis
    ids = []
    for name, n in counts.items():
        queue = queues.get_queue(name, redis)
        ids += [queue.enqueue("ebookstore.reports.period_bounds", "daily", description=name).id for _ in range(n)]
    label = "weighted" if weighted else "strict"
    argv = ctx.learner("worker_command")(rq_executable(), ctx.settings.redis_url, f"{ctx.stack.tag}.{label}", weighted)
    ctx.stack.start(label, argv, env={"EBOOKSTORE_QUEUES": str(_config(ctx))}).wait(timeout=10)
    jobs = [Job.fetch(i, connection=redis, serializer=queues.SERIALIZER) for i in ids]
    if any(job.ended_at is None for job in jobs):
        raise Fail(f"the {label} worker did not run every job; its log ends:\n{ctx.stack.log(label)[-500:]}")
    return [job.description for job in sorted(jobs, key=lambda j: j.ended_at)]


def strict_worker_runs_critical_first(ctx):
    """a strict worker runs every critical job before any low one"""
    order = _run(ctx, False, {"low": 10, "critical": 10})
    if order != ["critical"] * 10 + ["low"] * 10:
        raise Fail(f"the strict worker ran them in this order: {order}; list the queues most urgent first")


def weighted_worker_does_not_starve_low(ctx):
    """a weighted worker lets low jobs through while critical ones wait"""
    order = _run(ctx, True, {"critical": 24, "low": 24})
    low_early = order[:24].count("low")
    if low_early == 0:
        raise Fail("the weighted worker still ran every critical job first: use ebookstore.workers.WeightedWorker "
                   "(--worker-class)")
    if low_early > 15:
        raise Fail(f"{low_early} of the first 24 jobs were low: with weights 3:1, low should come first about a quarter "
                   "of the time")


CHECKS = [assigns_jobs_to_queues, orders_by_weight, strict_worker_runs_critical_first,
          weighted_worker_does_not_starve_low]
