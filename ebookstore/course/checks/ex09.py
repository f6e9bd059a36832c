"""Checks of exercise 09: the queue configuration file, weighted order, strict and weighted workers.

"Weighted" is a statistical property, so it is checked with enough draws to tell
it from the plausible wrong strategies — RQ's uniform random order, round-robin,
strict order — with an error rate far below 1 in 1,000: the worker class and
dequeue strategy of the learner's command (parsed by `rq worker`'s own option
parser) are asked for the order of the queues 2,000 times, in the grader's
process (real RQ code, no jobs needed; a real run would need ~160 jobs, over 3 s),
and the command then runs a few jobs for real, with the Redis URL in RQ_REDIS_URL only:
a command line (which `ps` shows to everyone) must not carry the password.

weighted_order is a pure function: its whole order (not only the first queue) is compared
with Sidekiq's rule's exact probabilities, for the course's weights and for others, and
hypothesis tries it on generated queue names and weights.
"""
import itertools
import os
import random
from collections import Counter
from urllib.parse import urlsplit

from hypothesis import HealthCheck, given, settings, strategies as st

from rq.job import Job
from rq.utils import import_worker_class

from ebookstore import queues
from ebookstore.course.checks.common import Fail, await_burst_worker, job_outcome, short
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


def _sidekiq_probabilities(weights: dict[str, int]) -> dict[tuple, float]:
    """The exact chance of each order under Sidekiq's rule (first occurrences of a shuffled weighted pool)."""
    chances = {}
    for order in itertools.permutations(weights):
        p, left = 1.0, sum(weights.values())
        for name in order:
            p, left = p * weights[name] / left, left - weights[name]
        chances[order] = p
    return chances


def _check_distribution(weighted_order, weights: dict[str, int], seed: int, draws: int = 6000) -> None:
    rng = random.Random(seed)
    seen = Counter(tuple(weighted_order(dict(weights), rng)) for _ in range(draws))
    firsts = Counter()
    for order, n in seen.items():
        firsts[order[0]] += n
    total = sum(weights.values())
    for name, weight in weights.items():
        share = firsts[name] / draws
        if abs(share - weight / total) > 0.03:
            raise Fail(f"with the weights {weights}, {name} came first {share:.0%} of the time; it should be "
                       f"about {weight / total:.0%}. Repeat each name `weight` times, shuffle, keep first occurrences")
    for order, chance in _sidekiq_probabilities(weights).items():
        share = seen[order] / draws
        if abs(share - chance) > 0.03:
            raise Fail(f"with the weights {weights}, the order {list(order)} came {share:.0%} of the time instead of "
                       f"about {chance:.0%}: after the first queue, the others are weighted too (it is the order a "
                       "worker falls back on when the first queue is empty). Shuffle the whole weighted pool")


def orders_by_weight(ctx):
    """weighted_order puts a queue first in proportion to its weight"""
    weighted_order = ctx.learner("weighted_order")
    weights = {"critical": 3, "default": 2, "low": 1}
    rng = random.Random(42)
    draws = [weighted_order(dict(weights), rng) for _ in range(50)]
    if any(not isinstance(order, list) or sorted(order) != ["critical", "default", "low"] for order in draws):
        bad = next(o for o in draws if not isinstance(o, list) or sorted(o) != ["critical", "default", "low"])
        raise Fail(f"each order holds every queue exactly once; got {bad!r}")
    again = random.Random(42)
    if [weighted_order(dict(weights), again) for _ in range(20)] != draws[:20]:
        raise Fail("the same rng seed gave different orders: shuffle with the rng you are given (rng.shuffle), "
                   "not the random module, so that a run can be repeated")
    _check_distribution(weighted_order, weights, 42)
    if len({tuple(o) for o in draws}) < 3:
        raise Fail("the order hardly varies: shuffle with the rng you are given")
    _check_distribution(weighted_order, {"mail": 1, "reports": 4}, 7, draws=3000)  # other names, other weights

    @settings(max_examples=60, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(st.dictionaries(st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8),
                           st.integers(1, 9), min_size=1, max_size=6), st.integers(0, 2 ** 32))
    def any_queues(weights, seed):
        order = weighted_order(dict(weights), random.Random(seed))
        if not isinstance(order, list) or sorted(order) != sorted(weights):
            raise Fail(f"for the weights {weights} you returned {order!r}: every queue name you are given, once "
                       "(not the course's three queues only)")
        if weighted_order(dict(weights), random.Random(seed)) != order:
            raise Fail("the same rng seed gave different orders: shuffle with the rng you are given")

    any_queues()


def _command(ctx, weighted: bool) -> list[str]:
    label = "weighted" if weighted else "strict"
    argv = ctx.learner("worker_command")(rq_executable(), f"{ctx.stack.tag}.{label}", weighted)
    if not isinstance(argv, list) or "worker" not in argv:
        raise Fail("return the command as a list of strings, e.g. [rq, 'worker', …]")
    password = urlsplit(ctx.settings.redis_url).password
    if any(password and password in str(arg) for arg in argv) or any(str(a).startswith("redis://") for a in argv):
        raise Fail("your command line carries the Redis URL and its password, which `ps` shows to every user of "
                   "the machine: leave --url out, `rq worker` reads RQ_REDIS_URL from its environment")
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
    proc = ctx.stack.start(label, argv, env={"EBOOKSTORE_QUEUES": str(_config(ctx)),
                                             "RQ_REDIS_URL": ctx.settings.redis_url})
    ended = await_burst_worker(ctx, proc)
    jobs = [Job.fetch(i, connection=redis, serializer=queues.SERIALIZER) for i in ids]
    left = [job for job in jobs if job.ended_at is None]
    if left:
        missing = sorted({job.description for job in left})
        if ended != "late" and all(job.get_status() == "queued" for job in left):
            raise Fail(f"the {label} worker left the {missing} jobs waiting: it must read critical, default and low")
        within = " within the check's time" if ended == "late" else ""
        raise Fail(f"the {label} worker did not run every job ({len(left)} left){within}: "
                   f"{job_outcome(left[0], ctx.stack.log(label, 200))}")
    if ended != "exited":
        raise Fail(f"the {label} worker still runs with its queues empty: a burst worker exits when there is "
                   "nothing left to do (--burst)")
    failed = [job for job in jobs if job.get_status() != "finished"]
    if failed:
        outcome = job_outcome(failed[0], ctx.stack.log(label, 200))
        if any(word in outcome for word in ("pickle", "Pickl", "Deserializ", "JSON", "json")):
            raise Fail(f"the {label} worker could not read the store's jobs ({short(outcome, 120)}): they are "
                       "JSON, and a worker reads jobs with pickle unless told otherwise: --serializer json")
        raise Fail(f"the {label} worker did not run every job ({len(failed)} failed): {outcome}")
    names = {job.worker_name for job in jobs}
    if names != {f"{ctx.stack.tag}.{label}"}:
        raise Fail(f"the jobs were run by a worker named {sorted(map(str, names))}, not the `name` you were given: "
                   "name the worker (--name), so that you can find it in the dashboard and in `rq info`")
    return [job.description for job in sorted(jobs, key=lambda j: j.ended_at)]


def strict_worker_runs_critical_first(ctx):
    """a strict worker runs every critical job before any low one"""
    order = _run(ctx, False, {"low": 4, "default": 2, "critical": 4})  # a strict worker is deterministic
    if order != ["critical"] * 4 + ["default"] * 2 + ["low"] * 4:
        early = order[:4].count("low") + order[:4].count("default")
        raise Fail(f"the strict worker ran {early} less urgent job(s) among the first 4, while critical ones waited "
                   f"(order: {' '.join(order)}): RQ reads the queues in the order you list them, so list them most "
                   "urgent first: critical, default, low")


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
