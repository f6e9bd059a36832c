"""A check's forked RQ worker (ebookstore/course/forked_worker.py) is a worker process of its own.

Run in a fresh Python each (a pytest worker has threads, and a process with threads starts its workers afresh):
the scenario script below prints what it saw as JSON.
"""
import json
import os
import subprocess
import sys
import textwrap

from ebookstore.config import PROJECT_ROOT

SCENARIO = textwrap.dedent('''
    import json, os, sys, threading, time
    from pathlib import Path
    import psutil
    from ebookstore import queues
    from ebookstore.config import Settings
    from ebookstore.course import forked_worker
    from ebookstore.runtime.stack import Stack

    root, mode = Path(sys.argv[1]), sys.argv[2]
    sys.path[:0] = [str(root), sys.argv[3]]  # the grader's process can import solutions/ (the project folder)
    import exercises.exfw as learner
    learner.VALUE = "changed by the check's process"   # what a worker started afresh would never see
    print("printed by the check, not yet flushed", end="")
    import logging
    logging.basicConfig(level=logging.DEBUG, format="CHECK'S LOGGING %(message)s")  # the learner's code may do that
    os.dup2(os.pipe()[1], 200)  # a descriptor of the check's (its report pipe, say)
    if mode == "threads":
        threading.Thread(target=time.sleep, args=(30,), daemon=True).start()
    stack = Stack(Settings.from_env(), stop_at_exit=False, cwd=root)
    try:
        stack.redis()
        connection = queues.connect(stack.settings)
        job = queues.get_queue("default", connection).enqueue(learner.job, 0 if mode != "timeout" else 30)
        seen = {"me": os.getpid(), "session": os.getsid(0)}
        try:
            seen["log"] = forked_worker.run(stack, "w", ["default"], timeout=5 if mode != "timeout" else 1, simple=True)
        except psutil.TimeoutExpired:
            seen["timed_out"] = True
        seen["left"] = [p.pid for p in psutil.Process().children(recursive=True) if p.name() != "redis-server"]
        seen["result"] = job.return_value()
    finally:
        stack.stop(timeout=2)
    print("\\n" + json.dumps(seen))
''')

LEARNER = textwrap.dedent('''
    import importlib.util, os, time
    VALUE = "from the file"

    def job(seconds):
        time.sleep(seconds)
        try:
            os.fstat(200)
            inherited = True
        except OSError:
            inherited = False
        return {"value": VALUE, "pid": os.getpid(), "session": os.getsid(0), "fd_200": inherited,
                "solutions": importlib.util.find_spec("solutions") is not None}
''')


def scenario(tmp_path, settings, mode: str) -> dict:
    root = tmp_path / "submission"
    (root / "exercises").mkdir(parents=True)
    (root / "exercises" / "__init__.py").write_text("")
    (root / "exercises" / "exfw.py").write_text(LEARNER)
    script = tmp_path / "scenario.py"
    script.write_text(SCENARIO)
    done = subprocess.run([sys.executable, str(script), str(root), mode, str(PROJECT_ROOT)], capture_output=True, text=True, timeout=60,
                          cwd=PROJECT_ROOT, env={**os.environ, **settings.to_env()})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_the_forked_worker_is_a_process_of_the_check_s_session_that_imports_the_learner_s_file_afresh(tmp_path, settings):
    seen = scenario(tmp_path, settings, "fork")
    result = seen["result"]
    assert result["value"] == "from the file"  # not the check's copy of the module
    assert result["pid"] != seen["me"] and result["session"] == seen["session"]  # forked: the check's session
    assert not result["solutions"] and not result["fd_200"]  # a fresh `rq worker`'s path; the check's files closed
    assert "Job OK" in seen["log"] and "printed by the check" not in seen["log"]
    assert "CHECK'S LOGGING" not in seen["log"]  # RQ's own log lines, as a fresh worker writes them
    assert seen["left"] == []


def test_a_process_with_threads_starts_its_worker_afresh(tmp_path, settings):
    seen = scenario(tmp_path, settings, "threads")
    result = seen["result"]
    assert result["value"] == "from the file" and not result["solutions"] and not result["fd_200"]
    assert result["session"] != seen["session"]  # an `rq worker` started as Stack.worker does: a session of its own
    assert "Job OK" in seen["log"]
    assert seen["left"] == []


def test_a_worker_still_running_at_its_time_limit_is_stopped(tmp_path, settings):
    seen = scenario(tmp_path, settings, "timeout")
    assert seen.get("timed_out") and seen["left"] == [] and seen["result"] is None
