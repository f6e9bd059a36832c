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
import shlex
import sys
from contextlib import closing
from pathlib import Path

import psutil

from ebookstore import store
from ebookstore.config import Settings, queue_backend
from ebookstore.credentials import private_home
from ebookstore.runtime import processes
from ebookstore.runtime.processes import PROCESS_NAME, RUN_TAG, wait_until


def _import_the_store() -> None:
    """Import what the commands run on (redis-py, RQ: about a second on a busy machine) once the
    command line is known to be right: a mistake in it is answered at once."""
    global AuthenticationError, RedisError, backends, jobs, mail, queues, workers, redis_server
    global START_TIMEOUT, Stack, StartError, clear_scheduler_locks, new_tag, require_free, stop_everything
    from redis.exceptions import AuthenticationError, RedisError

    from ebookstore import backends, jobs, mail, queues, workers
    from ebookstore.runtime import redis_server
    from ebookstore.runtime.stack import (START_TIMEOUT, Stack, StartError, clear_scheduler_locks, new_tag,
                                          require_free, stop_everything)


UP_PROCESSES = ("redis", "mail", "workers", "cron", "relay", "web")  # in the order they start


def cmd_up(args, settings: Settings) -> int:
    """Start the stack under supervisord, in the background: Redis, mail catcher, workers, cron, relay, web.

    supervisord starts again any of them that dies. On a half-dead stack (supervisord itself was
    killed, or gave a program up) it starts again what is missing.
    """
    from ebookstore.runtime import supervisord
    from ebookstore.web import dashboard_credentials  # here only: Flask and rq-dashboard, 0.1 s of CPU per command
    # The stack's workers deliver by real SMTP to the mail catcher, which files into the Maildir.
    settings = settings.replace(smtp_url=settings.smtp_url or f"smtp://127.0.0.1:{settings.smtp_port}")
    tag = _up_tag(settings)
    progs = supervisord.programs(settings, settings.workers, weighted=args.weighted)
    if "redis" in {p.name for p in progs}:
        server, kind = redis_server.find()  # before anything starts: no redis-server, nothing started
    if tag and supervisord.answers(settings.home):
        given_up = sorted({i["group"] for i in supervisord.states(settings.home).values()
                           if i["statename"] in ("FATAL", "STOPPED", "EXITED")})
        if not given_up:
            print(f"ebookstore is already up for {settings.home} (see: ebookstore status, "
                  f"{shlex.join(supervisord.ctl_argv(settings.home, 'status'))}; stop it: ebookstore down)")
            return 1
        print(f"ebookstore was half up (run tag {tag}): starting {', '.join(given_up)} again")
        stack = Stack(settings, tag=tag, stop_at_exit=False)
        _start_programs(stack, [p for p in progs if p.name in given_up])
        return 0
    if tag:  # its supervisord is gone: what it ran is unsupervised; Redis's append-only file keeps the queues
        print(f"ebookstore was half up (run tag {tag}, its supervisord is gone): "
              f"{stop_everything(settings.home)}; starting it again")
    for port, name in ((settings.redis_port, "redis"), (settings.smtp_port, "mail"), (settings.web_port, "web")):
        if name in {p.name for p in progs}:
            require_free(port, name)
    stack = Stack(settings, tag=new_tag("up"), stop_at_exit=False)
    mail.maildir(settings)  # aiosmtpd's Mailbox handler expects cur/ new/ tmp/
    try:
        supervisord.start(stack, progs)
        _start_programs(stack, progs)
    except BaseException:  # Ctrl-C included: a start that failed leaves nothing behind
        stack.stop()
        raise
    user, password = dashboard_credentials(settings)
    print(f"ebookstore is up under supervisord (run tag {stack.tag}); logs in {stack.log_dir}")
    print(f"  store      {settings.web_url}/")
    if settings.queue_backend == "rq":
        print(f"  dashboard  {settings.web_url}/jobs/   user {user}  password {password}")
    else:  # rq-dashboard reads RQ's queues only
        print(f"  dashboard  none for {settings.queue_backend} (the one at /jobs/ shows RQ's queues)")
    if "redis" in {p.name for p in progs}:
        print(f"  redis      {settings.redis_url_shown}  ({kind} {server}, version {redis_server.version(server)})")
        print(f"             password in {settings.home / 'redis-password'}; redis-cli reads it from REDISCLI_AUTH")
    print(f"  queue      {settings.queue_backend} (EBOOKSTORE_QUEUE_BACKEND: {', '.join(backends.KNOWN)})")
    if settings.queue_backend == "inline":
        print("  workers    none: each job runs at once in the process that enqueues it (web, relay); no Redis, no cron")
    else:
        print(f"  workers    {settings.workers} (EBOOKSTORE_WORKERS)")
    print(f"  smtp       127.0.0.1:{settings.smtp_port} -> {settings.maildir}")
    print("supervisord starts again any process that dies; look and steer with:")
    print(f"  {shlex.join(supervisord.ctl_argv(settings.home))} status | stop NAME | start NAME | tail NAME")
    print("Stop everything with: ebookstore down")
    return 0


def _start_programs(stack: Stack, progs) -> None:
    """Start each program under supervisord, in order, each once the one before answers."""
    from ebookstore.runtime import supervisord
    settings, home = stack.settings, stack.settings.home
    connection = queues.connect(settings)

    def workers_registered():
        if settings.queue_backend != "rq":  # Celery and Dramatiq say so in their log
            log = stack.log_path("worker-1")
            text = log.read_text(errors="replace") if log.exists() else ""
            return backends.ready_in_log(settings.queue_backend, text, settings.workers)
        names = [m.decode() for m in connection.smembers("rq:workers")]
        prefix = f"rq:worker:{stack.tag}.worker-"
        return sum(connection.exists(m) for m in names if m.startswith(prefix)) >= settings.workers
    ready = {"redis": stack.ping, "mail": lambda: processes.port_open(settings.smtp_port),
             "workers": workers_registered, "web": lambda: processes.port_open(settings.web_port)}
    # Redis first; the others at once (each waits for Redis, none for another), then wait for each to answer.
    names = [p.name for p in progs]
    for batch in ([n for n in names if n == "redis"], [n for n in names if n != "redis"]):
        for name in batch:
            supervisord.start_program(home, name)
        for name in batch:
            try:
                wait_until(ready.get(name, lambda: True), START_TIMEOUT, what=name)
            except TimeoutError:
                log = stack.log("worker-1" if name == "workers" else name)
                raise StartError(f"{name} did not answer within {START_TIMEOUT} s:\n{log}") from None
            if name == "redis":
                clear_scheduler_locks(stack)


def _up_tag(settings: Settings) -> str | None:
    """The run tag of the `ebookstore up` already running (in part) for this state folder, if any."""
    for proc in psutil.process_iter():
        tag = processes.environ(proc).get(RUN_TAG, "")
        if tag.startswith("up-") and _home_of(proc) == settings.home:
            return tag
    return None


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
    print(f"{'TAG':<12} {'PROCESS':<32} {'PORT':>6} " + processes.format_rows(rows).splitlines()[0])
    for row, line in zip(rows, processes.format_rows(rows).splitlines()[1:]):
        proc = psutil.Process(row["pid"])
        env = processes.environ(proc)
        what = env.get(PROCESS_NAME, "")
        role = processes.role(proc) or processes.library_role(proc)
        if role and role != "worker":  # a worker's horse or scheduler child has the worker's command line
            what = f"{what} {role}".strip()
        print(f"{env.get(RUN_TAG, ''):<12} {what:<32} {listening.get(row['pid'], ''):>6} {line}")
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
    """Replace this process with supervisord running --count workers (foreground): any that dies is started again."""
    from ebookstore.runtime import supervisord
    if args.to_catcher:  # the Procfile's mail process, on this user's SMTP port
        settings = settings.replace(smtp_url=f"smtp://127.0.0.1:{settings.smtp_port}")
    progs = supervisord.programs(settings, args.count or settings.workers, weighted=args.weighted, names={"workers"})
    if not progs:
        print("ebookstore workers: EBOOKSTORE_QUEUE_BACKEND=inline runs each job in the process that enqueues it: "
              "there are no workers to run", file=sys.stderr)
        return 2
    stack = _cli_stack(settings)
    _wait_for_redis(stack)
    stack.log_dir.mkdir(parents=True, exist_ok=True)
    config = supervisord.write_config(settings, stack.log_dir, progs, kind="workers")
    supervisord.socket_path(settings.home, "workers").unlink(missing_ok=True)
    argv = supervisord.argv(config)
    print(f"{shlex.join(argv)}  (logs in {stack.log_dir}; "
          f"{shlex.join(supervisord.ctl_argv(settings.home, kind='workers'))} status)", flush=True)
    os.execve(argv[0], argv, stack.env("workers"))


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
        connection = queues.connect(settings)
        purchase = jobs.buy_and_notify(conn, connection, args.buyer_id, args.ebook_id,
                                       backend=backends.get(settings, connection))
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
        print(f"ebookstore killport: port {args.port} is held by a process of user {processes.user_name(uid)}: "
              "not yours to stop (ask them, or use another port)", file=sys.stderr)
        return 1
    if pid is None:
        print(f"ebookstore killport: nothing listens on port {args.port}", file=sys.stderr)
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


def tcp_port(text: str) -> int:
    """A TCP port number: 1 to 65535."""
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"not a TCP port (1 to 65535): {store.shown(text)}")
    return value


def at_least_one(text: str) -> int:
    """A count: a whole number, 1 or more."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number, 1 or more: {store.shown(text)}")
    return value


def seconds(text: str) -> float:
    """A duration in seconds: a number, 0 or more."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of seconds, 0 or more: {store.shown(text)}")
    return value


def positive_seconds(text: str) -> float:
    value = seconds(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds above 0: {store.shown(text)}")
    return value


def backend_name(text: str) -> str:
    """A queue backend: rq, celery, dramatiq or inline."""
    try:
        return queue_backend(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def exercise_id(text: str) -> str:
    """An exercise the grader knows: ex01 … ex13."""
    from ebookstore.course.grading import EXERCISES  # the course's, only for the commands that grade
    if text not in EXERCISES:
        raise argparse.ArgumentTypeError(f"unknown exercise {store.shown(text)}; exercises: {', '.join(EXERCISES)}")
    return text


def exercise_list(text: str) -> str:
    """Comma-separated exercises (ebookstore grade --only): each one the grader knows."""
    for name in text.split(","):
        exercise_id(name.strip())
    return text


def folder(text: str) -> Path:
    if not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"no such folder: {store.shown(text)}")
    return Path(text)


def queue_list(text: str) -> list[str]:
    """Comma-separated queue names, each one the configuration file knows."""
    from ebookstore import queues
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
    down.add_argument("--timeout", type=seconds, default=5.0, help="seconds between SIGTERM and SIGKILL")
    down.set_defaults(func=cmd_down)
    sub.add_parser("status", help="the course's processes and ports, like ps").set_defaults(func=cmd_status)
    worker = sub.add_parser("worker", help="run a worker in the foreground")
    worker.add_argument("--queues", type=queue_list, help="comma-separated, in order (default: from queues.toml)")
    worker.add_argument("--weighted", action="store_true", help="weighted random queue order")
    worker.add_argument("--burst", action="store_true", help="exit when the queues are empty")
    worker.add_argument("--with-scheduler", action="store_true", help="also run scheduled jobs and retries")
    worker.add_argument("--name", help="worker name (shows in ps and on the dashboard)")
    worker.set_defaults(func=cmd_worker)
    supervise = sub.add_parser("workers", help="several workers under supervisord (foreground): any that dies "
                               "is started again")
    supervise.add_argument("--count", type=at_least_one, help="how many (default: $EBOOKSTORE_WORKERS, else 2)")
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
    killport.add_argument("port", type=tcp_port, help="1 to 65535")
    killport.add_argument("--timeout", type=seconds, default=5.0, help="seconds between SIGTERM and SIGKILL")
    killport.set_defaults(func=cmd_killport)
    check = sub.add_parser("check", help="grade exercises: ebookstore check ex04 [--solutions]")
    check.add_argument("exercises", nargs="*", type=exercise_id, help="ex01 … ex13, e.g. ex01 ex04 (default: all)")
    check.add_argument("--solutions", action="store_true", help="grade solutions/ instead of exercises/")
    check.add_argument("--all", action="store_true", help="a progress summary over every exercise")
    check.add_argument("--exercises", dest="exercises_folder", metavar="PATH", type=folder,
                       help="grade the exNN_….py files in PATH (a copy of someone's exercises/) instead")
    check.set_defaults(func=cmd_check)
    grade = sub.add_parser("grade", help="grade learners' submissions (folders or .zip files of exercise files)",
                           description="Grade each PATH: a folder holding a learner's exNN_….py files (a copy of "
                           "their exercises/, an unpacked zip, a clone of their fork) or a .zip. This runs their "
                           "code: grade as an unprivileged user.")
    grade.add_argument("paths", nargs="+", metavar="PATH")
    grade.add_argument("--only", metavar="EX,EX", type=exercise_list, help="only these exercises, e.g. ex04,ex05 (default: all)")
    grade.add_argument("--timeout", type=positive_seconds, default=30.0, help="seconds one check may take (default 30)")
    grade.add_argument("--jobs", type=at_least_one, default=1,
                       help="N × 4 checks graded at a time, from as many submissions as that takes (default 1)")
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
    # Settings from the environment are part of the command too: a mistake there is a usage mistake.
    checked = {"EBOOKSTORE_REDIS_PORT": tcp_port, "EBOOKSTORE_WEB_PORT": tcp_port, "EBOOKSTORE_SMTP_PORT": tcp_port,
               "EBOOKSTORE_WORKERS": at_least_one, "EBOOKSTORE_QUEUE_BACKEND": backend_name}
    for variable, kind in checked.items():
        if os.environ.get(variable):
            try:
                kind(os.environ[variable])
            except argparse.ArgumentTypeError as error:
                print(f"ebookstore {args.command}: {variable}: {error}", file=sys.stderr)
                return 2
    _import_the_store()
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
        if isinstance(error, StartError) and str(error) != first:  # the rest of it: what to do, a log's tail
            print(str(error), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
