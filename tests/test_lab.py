"""`make lab` serves the whole course: JupyterLab rooted at the project, opening notebook 00."""
import json
import os
import secrets
import signal
import subprocess
import urllib.error
import urllib.request

import psutil

from ebookstore.config import PROJECT_ROOT
from ebookstore.runtime import processes


def get(url: str, token: str):
    request = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    return urllib.request.urlopen(request, timeout=5)


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def test_make_lab_serves_exercises_readme_and_notebooks():
    port, token = processes.free_port(), secrets.token_hex(16)
    tag = f"{os.environ['EBOOKSTORE_TEST_TAG_PREFIX']}-lab"
    env = {**os.environ, "JUPYTER_PORT": str(port), "JUPYTER_TOKEN": token, processes.RUN_TAG: tag}
    lab = subprocess.Popen(["make", "--no-print-directory", "lab"], cwd=PROJECT_ROOT, env=env, start_new_session=True,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        processes.wait_until(lambda: lab.poll() is not None or processes.port_open(port), 60, what="JupyterLab")
        assert lab.poll() is None, lab.stdout.read()
        processes.wait_until(lambda: _answers(f"{base}/api/status", token), 30, what="JupyterLab's API")
        for path in ("exercises/ex04_async_purchase_notifications.py", "README.md", "checklist.md",
                     "notebooks/00_start_here.ipynb", "solutions/ex04_async_purchase_notifications.py"):
            with get(f"{base}/api/contents/{path}?content=0", token) as answer:
                assert json.load(answer)["path"] == path
        opener = urllib.request.build_opener(NoRedirect)
        try:
            opener.open(urllib.request.Request(f"{base}/", headers={"Authorization": f"token {token}"}), timeout=5)
        except urllib.error.HTTPError as redirect:
            assert redirect.headers["Location"].split("?")[0].endswith("/lab/tree/notebooks/00_start_here.ipynb")
        else:
            raise AssertionError("/ should redirect to notebook 00")
        listener = psutil.Process(processes.listener_pid(port))
        assert processes.environ(listener).get(processes.RUN_TAG) == tag
        assert {c.laddr.ip for c in listener.net_connections("tcp") if c.status == psutil.CONN_LISTEN} == {"127.0.0.1"}
    finally:
        server = processes.tagged(tag)
        os.killpg(lab.pid, signal.SIGTERM)  # make and JupyterLab: Ctrl-C in a terminal does the same
        if processes.wait_gone(server, 15):
            os.killpg(lab.pid, signal.SIGKILL)
        lab.wait(5)
    assert processes.wait_gone(processes.tagged(tag), 5) == []


def _answers(url: str, token: str) -> bool:
    try:
        with get(url, token):
            return True
    except OSError:
        return False
