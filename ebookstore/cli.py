"""The `ebookstore` command: `ebookstore up`, `status`, `down`, `worker`, `buy`, `outbox`, `killport`, `check`, `grade`.

Run `ebookstore --help` for the list. Errors are one line on stderr and a non-zero exit.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from contextlib import closing

import psutil
from redis.exceptions import RedisError

from ebookstore import jobs, mail, queues, store, workers
from ebookstore.config import Settings
from ebookstore.runtime import processes, redis_server
from ebookstore.runtime.processes import RUN_TAG, wait_until
from ebookstore.runtime.stack import Stack, StartError, new_tag, stop_everything
from ebookstore.web import dashboard_credentials


def cmd_up(args, settings: Settings) -> int:
    """Start Redis, the mail catcher, a worker, cron and the web app in the background."""
    # The stack's workers deliver by real SMTP to the mail catcher, which files into the Maildir.
    running = [p for p in psutil.process_iter() if _home_of(p) == settings.home
               and processes.environ(p).get(RUN_TAG, "").startswith("up-")]
    if running:
        print(f"ebookstore is already up for {settings.home} (see: ebookstore status; stop it: ebookstore down)")
        return 1
    settings = settings.replace(smtp_url=settings.smtp_url or f"smtp://127.0.0.1:{settings.smtp_port}")
    stack = Stack(settings, tag=new_tag("up"), stop_at_exit=False)
    try:
        stack.redis()
        stack.mail()
        stack.worker("worker", weighted=args.weighted, with_scheduler=True, wait_ready=True)
        stack.cron()
        stack.relay()
        stack.web()
    except Exception:
        stack.stop()
        raise
    user, password = dashboard_credentials(settings)
    server, kind = redis_server.find()
    print(f"ebookstore is up (run tag {stack.tag}); logs in {stack.log_dir}")
    print(f"  store      {settings.web_url}/")
    print(f"  dashboard  {settings.web_url}/jobs/   user {user}  password {password}")
    print(f"  redis      {settings.redis_url}  ({kind} {server}, version {redis_server.version(server)})")
    print(f"  smtp       127.0.0.1:{settings.smtp_port} -> {settings.maildir}")
    print("Stop everything with: ebookstore down")
    return 0


def cmd_down(args, settings: Settings) -> int:
    outcome = stop_everything(settings.home, timeout=args.timeout)
    for pid, how in sorted(outcome.items()):
        print(f"PID {pid}: {how}")
    print(f"stopped {len(outcome)} process(es)" if outcome else "nothing was running")
    return 0


def cmd_status(args, settings: Settings) -> int:
    procs = [p for p in psutil.process_iter() if _home_of(p) == settings.home and p.pid != os.getpid()]
    if not procs:
        print("no course process is running (start them with: ebookstore up)")
        return 0
    listening = {c.pid: c.laddr.port for c in psutil.net_connections("tcp") if c.status == psutil.CONN_LISTEN}
    rows = processes.ps_rows(procs)
    print(f"{'TAG':<12} {'PORT':>6} " + processes.format_rows(rows).splitlines()[0])
    for row, line in zip(rows, processes.format_rows(rows).splitlines()[1:]):
        tag = processes.environ(psutil.Process(row["pid"])).get(RUN_TAG, "")
        print(f"{tag:<12} {listening.get(row['pid'], ''):>6} {line}")
    return 0


def _home_of(proc):
    env = processes.environ(proc)
    return Settings.from_env(env).home if env.get(RUN_TAG) else None


def cmd_worker(args, settings: Settings) -> int:
    """Replace this process with `rq worker …` (foreground; Ctrl-C stops it warmly)."""
    name = args.name or f"cli.worker-{os.getpid()}"
    argv = workers.worker_argv(settings, name, args.queues.split(",") if args.queues else None,
                               weighted=args.weighted, burst=args.burst, with_scheduler=args.with_scheduler)
    stack = Stack(settings, tag=os.environ.get(RUN_TAG) or new_tag("cli"), stop_at_exit=False)
    env = stack.env("worker")
    _wait_for_redis(stack)
    print(" ".join(argv), flush=True)
    os.execve(argv[0], argv, env)


def cmd_redis(args, settings: Settings) -> int:
    """Replace this process with the course's redis-server (foreground, for the Procfile)."""
    argv = redis_server.argv(settings)
    print(" ".join(argv), flush=True)
    os.execv(argv[0], argv)


def cmd_mail(args, settings: Settings) -> int:
    """Replace this process with the SMTP catcher (aiosmtpd) filing into the Maildir."""
    argv = Stack.mail_argv(settings)
    mail.maildir(settings)
    print(" ".join(argv), flush=True)
    os.execv(argv[0], argv)


def _wait_for_redis(stack: Stack, timeout: float = 30) -> None:
    # Under honcho every process starts at once: give Redis time to come up.
    wait_until(stack.ping, timeout, interval=0.2, what=f"Redis at {stack.settings.redis_url}")


def cmd_relay(args, settings: Settings) -> int:
    """The outbox relay in the foreground: enqueue jobs recorded while Redis was down."""
    from ebookstore.outbox import run
    run(settings)
    return 0


def cmd_cron(args, settings: Settings) -> int:
    from ebookstore.cron import run
    _wait_for_redis(Stack(settings, stop_at_exit=False))
    run(settings)
    return 0


def cmd_buy(args, settings: Settings) -> int:
    with closing(store.connect(settings.database_path)) as conn:
        purchase = jobs.buy_and_notify(conn, queues.connect(settings), args.buyer_id, args.ebook_id)
    print(json.dumps(purchase, indent=2))
    if not purchase["jobs"]:
        print("warning: Redis did not answer; the emails were not queued", file=sys.stderr)
    return 0


def cmd_outbox(args, settings: Settings) -> int:
    messages = mail.outbox(settings)
    if args.json:
        print(json.dumps(messages, indent=2))
        return 0
    for m in messages:
        print(f"{m['date']}  {m['to']:<22} {m['subject']}")
    print(f"{len(messages)} email(s) in {settings.maildir}")
    return 0


def cmd_killport(args, settings: Settings) -> int:
    pid = processes.listener_pid(args.port)
    if pid is None:
        print(f"nothing listens on port {args.port}")
        return 1
    proc = psutil.Process(pid)
    what = " ".join(proc.cmdline()) or proc.name()
    how = processes.stop([proc], timeout=args.timeout).get(pid, "exited")
    print(f"port {args.port}: PID {pid} ({what}) {how}")
    return 0


def cmd_check(args, settings: Settings) -> int:
    from ebookstore.course.grading import run_cli  # the course's grader, only for this command
    return run_cli(args.exercises, solutions=args.solutions or settings.solutions, all_=args.all,
                   folder=args.exercises_folder)


def cmd_grade(args, settings: Settings) -> int:
    from ebookstore.course import submissions  # the course's grader, only for this command
    return submissions.run_cli(args.paths, args.only, args.timeout, args.jobs, args.json, args.csv, args.junit)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ebookstore", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the whole stack in the background")
    up.add_argument("--weighted", action="store_true", help="weighted queue order (Sidekiq style)")
    up.set_defaults(func=cmd_up)
    down = sub.add_parser("down", help="stop every process the course started")
    down.add_argument("--timeout", type=float, default=5.0, help="seconds between SIGTERM and SIGKILL")
    down.set_defaults(func=cmd_down)
    sub.add_parser("status", help="the course's processes and ports, like ps").set_defaults(func=cmd_status)
    worker = sub.add_parser("worker", help="run a worker in the foreground")
    worker.add_argument("--queues", help="comma-separated, in order (default: from queues.toml)")
    worker.add_argument("--weighted", action="store_true", help="weighted random queue order")
    worker.add_argument("--burst", action="store_true", help="exit when the queues are empty")
    worker.add_argument("--with-scheduler", action="store_true", help="also run scheduled jobs and retries")
    worker.add_argument("--name", help="worker name (shows in ps and on the dashboard)")
    worker.set_defaults(func=cmd_worker)
    sub.add_parser("cron", help="run the cron scheduler in the foreground").set_defaults(func=cmd_cron)
    sub.add_parser("redis", help="run the course's redis-server in the foreground").set_defaults(func=cmd_redis)
    sub.add_parser("relay", help="run the outbox relay in the foreground").set_defaults(func=cmd_relay)
    sub.add_parser("mail", help="run the SMTP mail catcher in the foreground").set_defaults(func=cmd_mail)
    buy = sub.add_parser("buy", help="buy an ebook (as the web app would)")
    buy.add_argument("buyer_id", type=int)
    buy.add_argument("ebook_id", type=int)
    buy.set_defaults(func=cmd_buy)
    outbox = sub.add_parser("outbox", help="the emails delivered so far")
    outbox.add_argument("--json", action="store_true", help="a JSON list of {to, subject, date, key}")
    outbox.set_defaults(func=cmd_outbox)
    killport = sub.add_parser("killport", help="stop the process listening on a TCP port (not its clients)")
    killport.add_argument("port", type=int)
    killport.add_argument("--timeout", type=float, default=5.0, help="seconds between SIGTERM and SIGKILL")
    killport.set_defaults(func=cmd_killport)
    check = sub.add_parser("check", help="grade exercises: ebookstore check ex04 [--solutions]")
    check.add_argument("exercises", nargs="*", help="e.g. ex01 ex04 (default: all)")
    check.add_argument("--solutions", action="store_true", help="grade solutions/ instead of exercises/")
    check.add_argument("--all", action="store_true", help="a progress summary over every exercise")
    check.add_argument("--exercises", dest="exercises_folder", metavar="PATH",
                       help="grade the exNN_….py files in PATH (a copy of someone's exercises/) instead")
    check.set_defaults(func=cmd_check)
    grade = sub.add_parser("grade", help="grade learners' submissions (folders or .zip files of exercise files)",
                           description="Grade each PATH: a folder holding a learner's exNN_….py files (a copy of "
                           "their exercises/, an unpacked zip, a clone of their fork) or a .zip. This runs their "
                           "code: grade as an unprivileged user.")
    grade.add_argument("paths", nargs="+", metavar="PATH")
    grade.add_argument("--only", metavar="EX,EX", help="only these exercises, e.g. ex04,ex05 (default: all)")
    grade.add_argument("--timeout", type=float, default=30.0, help="seconds one check may take (default 30)")
    grade.add_argument("--jobs", type=int, default=1, help="submissions graded at once (default 1)")
    grade.add_argument("--json", nargs="?", const="-", metavar="FILE",
                       help="a JSON list of {submission, exercise, check, passed, hint, seconds}, to FILE or stdout")
    grade.add_argument("--csv", nargs="?", const="-", metavar="FILE",
                       help="CSV, one row per submission and check, to FILE or stdout")
    grade.add_argument("--junit", metavar="FILE", help="JUnit XML (a testsuite per submission, a testcase per check)")
    grade.set_defaults(func=cmd_grade)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args, Settings.from_env())
    except (StartError, FileNotFoundError, RedisError, TimeoutError, ValueError, store.PurchaseError) as error:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(f"ebookstore {args.command}: {first}", file=sys.stderr)
        if isinstance(error, StartError):
            print(str(error), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
