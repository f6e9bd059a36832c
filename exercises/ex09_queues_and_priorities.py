"""Exercise 09 — queues and priorities: the queue configuration file, weighted order, and a worker.

Notebook: notebooks/09_queues_and_priorities.ipynb · check: check("ex09") or `ebookstore check ex09`
"""
import random


def queue_config() -> str:
    """The text of a queue configuration file (TOML, like ebookstore/queues.toml).

    Declare the queues critical, default and low — in that order, with the
    weights 3, 2 and 1 — and assign the store's jobs: a buyer waits for
    ebookstore.jobs.purchase_notification; nobody waits for
    ebookstore.jobs.statistics_report or ebookstore.jobs.daily_statistics.
    """
    raise NotImplementedError  # your code here


def weighted_order(weights: dict[str, int], rng: random.Random) -> list[str]:
    """Every queue name once, in a random order where a queue of weight w comes first w/total of the time.

    Sidekiq's rule: put each name into a list as many times as its weight,
    shuffle the list with `rng`, keep the first occurrence of each name.
    """
    raise NotImplementedError  # your code here


def worker_command(rq: str, name: str, weighted: bool) -> list[str]:
    """The command line of a burst worker named `name` on critical, default and low, strict or weighted.

    Strict: RQ's own order (the order you list the queues in). Weighted: with
    the store's worker class ebookstore.workers.WeightedWorker, which reads the
    weights from the configuration file. JSON serializer; exits when the queues are empty.
    No Redis URL on the command line: `ps` shows a command line, password included, to
    every user of the machine. The worker finds Redis in its environment, in
    RQ_REDIS_URL, which `rq worker` reads (whoever starts it sets that variable).
    """
    raise NotImplementedError  # your code here
