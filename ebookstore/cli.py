"""The `ebookstore` command: `ebookstore up`, `status`, `down`, `worker`, `buy`, `outbox`, `killport`, `check`, `grade`.

Run `ebookstore --help` for the list. Errors are one line on stderr and a non-zero exit:
2 for a mistake in the command itself (a bad argument, an unknown queue), 1 when it failed.
Every long-running process it starts carries a run tag (EBOOKSTORE_RUN_TAG), so that
`ebookstore status` lists it and `ebookstore down` stops it.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from contextlib import closing

import psutil
from redis.exceptions import AuthenticationError, RedisError

from ebookstore import jobs, mail, queues, store, workers
from ebookstore.config import Settings
from ebookstore.credentials import private_home
from ebookstore.runtime import processes, redis_server
from ebookstore.runtime.processes import PROCESS_NAME, RUN_TAG, wait_until
from ebookstore.runtime.stack import Stack, StartError, new_tag, stop_everything

UP_PROCESSES = ("redis", "mail", "workers", "cron", "relay", "web")  # in the order they start


def cmd_up(args, settings: Settings) -> int:
    """Start Redis, the mail catcher, the worker supervisor, cron, the relay and the web app in the background.

    On a half-dead stack (a process of an earlier `up` died) it starts again what is missing.
    """
    # The stack's workers deliver by real SMTP to the mail catcher, which files into the Maildir.
    settings = settings.replace(smtp_url=settings.smtp_url or f"smtp://127.0.0.1:{settings.smtp_port}")
    tag = _up_tag(settings)
    wanted = [n for n in UP_PROCESSES if not (n == "redis" and settings.external_redis_url)]
    missing = [n for n in wanted if not (tag and processes.tagged(tag, n))]
    if not missing:
        print(f"ebookstore is already up for {settings.home} (see: ebookstore status; stop it: ebookstore down)")
        return 1
    stack = Stack(settings, tag=tag or new_tag("up"), stop_at_exit=False)
    if tag:
        print(f"ebookstore was half up (run tag {tag}): starting {', '.join(missing)} again")
    starters = {"redis": stack.redis, "mail": stack.mail, "workers": lambda: _start_workers(stack, args.weighted),
                "cron": stack.cron, "relay": stack.relay, "web": stack.web}
    server, kind = redis_server.find()  # before anything starts: no redis-server, nothing started
    try:
        for name in missing:
            starters[name]()
    except BaseException:  # Ctrl-C included
        if not tag:
            stack.stop()  # a fresh start that failed leaves nothing behind
        raise
    from ebookstore.web import dashboard_credentials  # Flask and the dashboard: only `up` needs them
    user, password = dashboard_credentials(settings)
    print(f"ebookstore is up (run tag {stack.tag}); logs in {stack.log_dir}")
    print(f"  store      {settings.web_url}/")
    print(f"  dashboard  {settings.web_url}/jobs/   user {user}  password {password}")
    print(f"  redis      {settings.redis_url_shown}  ({kind} {server}, version {redis_server.version(server)})")
    print(f"             password in {settings.home / 'redis-password'}; redis-cli reads it from REDISCLI_AUTH")
    print(f"  workers    {settings.workers}, restarted when one dies (the `workers` process supervises them)")
    print(f"  smtp       127.0.0.1:{settings.smtp_port} -> {settings.maildir}")
    print("Stop everything with: ebookstore down")
    return 0


def _up_tag(settings: Settings) -> str | None:
    """The run tag of the `ebookstore up` already running (in part) for this state folder, if any."""
    for proc in psutil.process_iter():
        tag = processes.environ(proc).get(RUN_TAG, "")
        if tag.startswith("up-") and _home_of(proc) == settings.home:
            return tag
    return None


def _start_workers(stack: Stack, weighted: bool) -> None:
    """The supervisor (`ebookstore workers`), once its workers have registered in Redis."""
    # Workers left by a supervisor that died would not be supervised: stop them first.
    strays = [p for p in stack.processes() if processes.environ(p).get(PROCESS_NAME, "").startswith("worker-")]
    processes.stop(strays, timeout=5)
    count = stack.settings.workers
    argv = [sys.executable, "-m", "ebookstore.cli", "workers", "--count", str(count)]
    connection = queues.connect(stack.settings)

    def registered():
        names = [m.decode() for m in connection.smembers("rq:workers")]
        return sum(connection.exists(m) for m in names if m.startswith(f"rq:worker:{stack.tag}.worker-")) >= count
    stack.start("workers", argv + (["--weighted"] if weighted else []), ready=registered)


def cmd_down(args, settings: Settings) -> int:
    outcome = stop_everything(settings.home, timeout=args.timeout)
    for pid, how in sorted(outcome.items()):
        print(f"PID {pid} ({outcome.names.get(pid, '?')}): {how}")
    print(f"stopped {len(outcome)} process(es)" if outcome else "nothing was running")
    return 0


def cmd_status(args, settings: Settings) -> int:
    procs = [p for p in psutil.process_iter() if _home_of(p) == settings.home and p.pid != os.getpid()]
    if not procs:
        print("no course process is running (start them with: ebookstore up)")
        return 0
    listening = {c.pid: c.laddr.port for c in psutil.net_connections("tcp") if c.status == psutil.CONN_LISTEN}
    rows = processes.ps_rows(procs)
    print(f"{'TAG':<12} {'PROCESS':<24} {'PORT':>6} " + processes.format_rows(rows).splitlines()[0])
    for row, line in zip(rows, processes.format_rows(rows).splitlines()[1:]):
        proc = psutil.Process(row["pid"])
        env = processes.environ(proc)
        what = env.get(PROCESS_NAME, "")
        role = processes.role(proc)
        if role and role != "worker":  # a worker's horse or scheduler child has the worker's command line
            what = f"{what} {role}".strip()
        print(f"{env.get(RUN_TAG, ''):<12} {what:<24} {listening.get(row['pid'], ''):>6} {line}")
    return 0


def _home_of(proc):
    env = processes.environ(proc)
    return Settings.from_env(env).home if env.get(RUN_TAG) else None


def cmd_worker(args, settings: Settings) -> int:
    """Replace this process with `rq worker …` (foreground; Ctrl-C stops it warmly)."""
    name = args.name or f"cli.worker-{os.getpid()}"
    argv = workers.worker_argv(settings, name, args.queues, weighted=args.weighted, burst=args.burst,
                               with_scheduler=args.with_scheduler)
    stack = _cli_stack(settings)
    _wait_for_redis(stack)
    # The URL and its password reach `rq worker` in RQ_REDIS_URL (its environment), not in ps.
    print(f"RQ_REDIS_URL={settings.redis_url_shown} " + " ".join(argv), flush=True)
    os.execve(argv[0], argv, stack.env("worker"))


def cmd_workers(args, settings: Settings) -> int:
    """The worker supervisor in the foreground: keeps --count workers running, restarts any that dies."""
    from ebookstore.runtime import supervisor
    if args.to_catcher:  # the Procfile's mail process, on this user's SMTP port
        settings = settings.replace(smtp_url=f"smtp://127.0.0.1:{settings.smtp_port}")
    _wait_for_redis(_cli_stack(settings))
    return supervisor.run(settings, args.count, weighted=args.weighted)


def cmd_redis(args, settings: Settings) -> int:
    """Replace this process with the course's redis-server (foreground, for the Procfile)."""
    argv = redis_server.argv(settings)
    print(" ".join(argv), flush=True)
    os.execve(argv[0], argv, _cli_stack(settings).env("redis"))


def cmd_mail(args, settings: Settings) -> int:
    """Replace this process with the SMTP catcher (aiosmtpd) filing into the Maildir."""
    argv = Stack.mail_argv(settings)
    mail.maildir(settings)
    print(" ".join(argv), flush=True)
    os.execve(argv[0], argv, _cli_stack(settings).env("mail"))


def cmd_web(args, settings: Settings) -> int:
    """Replace this process with the web app served by waitress (foreground, for the Procfile)."""
    argv = Stack.web_argv(settings, args.server)
    print(" ".join(argv), flush=True)
    os.execve(argv[0], argv, _cli_stack(settings).env("web"))


def _cli_stack(settings: Settings) -> Stack:
    """A Stack for a process this command runs: the run tag it was given (honcho, up), else a new cli-… one."""
    return Stack(settings, tag=os.environ.get(RUN_TAG) or new_tag("cli"), stop_at_exit=False)


def _wait_for_redis(stack: Stack, timeout: float = 30) -> None:
    # Under honcho every process starts at once: give Redis time to come up.
    wait_until(stack.ping, timeout, interval=0.2, what=f"Redis at {stack.settings.redis_url_shown}")


def cmd_relay(args, settings: Settings) -> int:
    """The outbox relay in the foreground: enqueue jobs recorded while Redis was down."""
    from ebookstore.outbox import run
    run(settings)
    return 0


def cmd_cron(args, settings: Settings) -> int:
    from ebookstore.cron import run
    _wait_for_redis(_cli_stack(settings))
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
    uid = processes.listener_uid(args.port)
    if pid is None and uid is not None and uid != os.getuid():
        print(f"port {args.port} is held by a process of user {processes.user_name(uid)}: not yours to stop "
              "(ask them, or use another port)")
        return 1
    if pid is None:
        print(f"nothing listens on port {args.port}")
        return 1
    proc = psutil.Process(pid)
    what = " ".join(proc.cmdline()) or proc.name()
    how = processes.stop([proc], timeout=args.timeout).get(pid, "exited")
    print(f"port {args.port}: PID {pid} ({what}) {how}")
    return 0


def cmd_check(args, settings: Settings) -> int:
    from ebookstore.course.proctor import run_cli  # the course's grader, only for this command
    return run_cli(args.exercises, solutions=args.solutions or settings.solutions, all_=args.all,
                   folder=args.exercises_folder)


def cmd_grade(args, settings: Settings) -> int:
    from ebookstore.course import submissions  # the course's grader, only for this command
    return submissions.run_cli(args.paths, args.only, args.timeout, args.jobs, args.json, args.csv, args.junit)


class Parser(argparse.ArgumentParser):
    """argparse, with a mistake told in one line (not the usage block) and exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: {message} (see: {self.prog} --help)\n")


def sqlite_id(text: str) -> int:
    """An id as SQLite stores it: a 64-bit signed integer."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {store.shown(text)}") from None
    if not store.ID_MIN <= value <= store.ID_MAX:
        raise argparse.ArgumentTypeError(f"out of range (ids are 64-bit integers): {store.shown(text)}")
    return value


def queue_list(text: str) -> list[str]:
    """Comma-separated queue names, each one the configuration file knows."""
    known = queues.load_config().names
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown queue {store.shown(','.join(unknown) or text)}; "
                                         f"known queues: {', '.join(known)}")
    return names


def parser() -> argparse.ArgumentParser:
    p = Parser(prog="ebookstore", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the whole stack in the background (or repair a half-dead one)")
    up.add_argument("--weighted", action="store_true", help="weighted queue order (Sidekiq style)")
    up.set_defaults(func=cmd_up)
    down = sub.add_parser("down", help="stop every process the course started")
    down.add_argument("--timeout", type=float, default=5.0, help="seconds between SIGTERM and SIGKILL")
    down.set_defaults(func=cmd_down)
    sub.add_parser("status", help="the course's processes and ports, like ps").set_defaults(func=cmd_status)
    worker = sub.add_parser("worker", help="run a worker in the foreground")
    worker.add_argument("--queues", type=queue_list, help="comma-separated, in order (default: from queues.toml)")
    worker.add_argument("--weighted", action="store_true", help="weighted random queue order")
    worker.add_argument("--burst", action="store_true", help="exit when the queues are empty")
    worker.add_argument("--with-scheduler", action="store_true", help="also run scheduled jobs and retries")
    worker.add_argument("--name", help="worker name (shows in ps and on the dashboard)")
    worker.set_defaults(func=cmd_worker)
    supervise = sub.add_parser("workers", help="run and supervise several workers: restart any that dies")
    supervise.add_argument("--count", type=int, help="how many (default: $EBOOKSTORE_WORKERS, else 2)")
    supervise.add_argument("--weighted", action="store_true", help="weighted random queue order")
    supervise.add_argument("--to-catcher", action="store_true",
                           help="deliver mail by SMTP to the course's mail catcher (`ebookstore mail`, your SMTP port)")
    supervise.set_defaults(func=cmd_workers)
    sub.add_parser("cron", help="run the cron scheduler in the foreground").set_defaults(func=cmd_cron)
    sub.add_parser("redis", help="run the course's redis-server in the foreground").set_defaults(func=cmd_redis)
    sub.add_parser("relay", help="run the outbox relay in the foreground").set_defaults(func=cmd_relay)
    sub.add_parser("mail", help="run the SMTP mail catcher in the foreground").set_defaults(func=cmd_mail)
    web = sub.add_parser("web", help="serve the web app in the foreground (waitress, 127.0.0.1)")
    web.add_argument("--server", choices=["waitress", "flask"], default="waitress",
                     help="flask: Flask's development server instead")
    web.set_defaults(func=cmd_web)
    buy = sub.add_parser("buy", help="buy an ebook (as the web app would)")
    buy.add_argument("buyer_id", type=sqlite_id)
    buy.add_argument("ebook_id", type=sqlite_id)
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


# Commands that run as a long-lived process of their own (in this process): it must carry a run tag.
IN_PROCESS = {"relay", "cron", "workers"}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    os.umask(0o077)  # files this command (or what it execs: redis-server, rq) writes are the user's alone
    settings = None
    try:
        settings = Settings.from_env()
        if args.command in IN_PROCESS and not os.environ.get(RUN_TAG):
            # Started by hand: start again, the same command, with a run tag in the environment
            # (a process's environment is fixed when it starts; setting os.environ now would not show).
            env = _cli_stack(settings).env(args.command)
            os.execve(sys.executable, [sys.executable, "-m", "ebookstore.cli", *argv], env)
        private_home(settings.home)
        return args.func(args, settings)
    except AuthenticationError:
        print(f"ebookstore {args.command}: the Redis on port {settings.redis_port} refused the password of "
              f"{settings.home}: it belongs to another state folder (another `ebookstore up`, a notebook, "
              "another user?). Choose another port with EBOOKSTORE_REDIS_PORT, or the right EBOOKSTORE_HOME.",
              file=sys.stderr)
        return 1
    except (StartError, FileNotFoundError, RedisError, TimeoutError, ValueError, OSError, psutil.Error,
            store.PurchaseError) as error:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(f"ebookstore {args.command}: {store.shown(first, 300)}", file=sys.stderr)
        if isinstance(error, StartError):
            print(str(error), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
