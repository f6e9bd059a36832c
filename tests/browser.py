"""Headless Chromium (Debian's package) driven over the DevTools protocol, for the site's test.

    with Browser() as browser:
        page = browser.open("http://127.0.0.1:PORT/index.html")   # a Visit: errors, outside requests, facts
        browser.evaluate("document.title")

Chromium runs in a session of its own with a fresh profile folder, and is stopped — its whole process
group, and anything still using that profile — when the block ends, even on error.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field

import psutil
import websocket

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0"]


@dataclass
class Visit:
    """What a page did while it loaded: its console errors, requests to other hosts, and `facts` (see open)."""
    url: str
    errors: list[str] = field(default_factory=list)
    outside_requests: list[str] = field(default_factory=list)
    facts: dict = field(default_factory=dict)


class Browser:
    def __init__(self, timeout: float = 30.0):
        if CHROMIUM is None:
            raise RuntimeError("Chromium is not installed: apt-get update && apt-get install -y chromium")
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="site-test-chromium-")
        self.process = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        start_new_session=True)  # its own process group: stopped as one
        self.ws, self.next_id, self.events = None, 0, []

    def __enter__(self) -> Browser:
        try:
            self.ws = websocket.create_connection(self._page_websocket(), timeout=self.timeout,
                                                  suppress_origin=True)
            for domain in ("Page", "Runtime", "Log", "Network"):
                self.call(f"{domain}.enable")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _page_websocket(self) -> str:
        """The DevTools address of Chromium's first tab (Chromium writes its port into the profile)."""
        active_port = os.path.join(self.profile, "DevToolsActivePort")
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Chromium exited at start-up with status {self.process.returncode}")
            if os.path.exists(active_port) and open(active_port).read().count("\n") >= 1:
                port = open(active_port).read().split()[0]
                targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5))
                pages = [t for t in targets if t["type"] == "page"]
                if pages:
                    return pages[0]["webSocketDebuggerUrl"]
            time.sleep(0.1)
        raise TimeoutError(f"Chromium's DevTools did not answer within {self.timeout} s")

    def call(self, method: str, **params) -> dict:
        """Send one DevTools command and return its result (events that arrive meanwhile are kept)."""
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            message = json.loads(self.ws.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)
        raise TimeoutError(f"{method}: no answer within {self.timeout} s")

    def wait_for(self, event: str) -> dict:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            for message in self.events:
                if message.get("method") == event:
                    return message
            self.ws.settimeout(max(0.1, deadline - time.monotonic()))
            self.events.append(json.loads(self.ws.recv()))
        raise TimeoutError(f"{event} did not come within {self.timeout} s")

    def evaluate(self, expression: str):
        """The value of a JavaScript expression in the page (promises awaited)."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:80]}…: {result['exceptionDetails']}")
        return result["result"].get("value")

    def open(self, url: str, facts: str = "null", settle: float = 0.3) -> Visit:
        """Load `url`, wait for its load event (and `settle` s more), and report what happened.

        facts: a JavaScript expression evaluated once the page has loaded, returned in Visit.facts.
        """
        self.events = []
        self.call("Page.navigate", url=url)
        self.wait_for("Page.loadEventFired")
        time.sleep(settle)
        visit = Visit(url, facts=self.evaluate(facts))
        self.call("Runtime.evaluate", expression="0")  # collects the events that arrived while settling
        origin = "/".join(url.split("/")[:3]) + "/"
        for message in self.events:
            method, params = message.get("method"), message.get("params", {})
            if method == "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                visit.errors.append(f"exception: {details.get('exception', {}).get('description') or details}")
            elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
                visit.errors.append("console.error: " + " ".join(str(a.get("value", a.get("description")))
                                                                 for a in params["args"]))
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                entry = params["entry"]
                visit.errors.append(f"{entry['source']}: {entry['text']} {entry.get('url', '')}".strip())
            elif method == "Network.requestWillBeSent":
                requested = params["request"]["url"]
                if not requested.startswith((origin, "data:", "blob:", "about:")):
                    visit.outside_requests.append(requested)
        return visit

    def close(self) -> None:
        """Stop Chromium: its process group, then anything else still using its profile folder."""
        if self.ws is not None:
            self.ws.close()
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.process.wait(timeout=5)
                break
            except subprocess.TimeoutExpired:
                continue
        left = self.processes()
        for proc in left:
            proc.kill()
        psutil.wait_procs(left, timeout=5)
        shutil.rmtree(self.profile, ignore_errors=True)

    def processes(self) -> list[psutil.Process]:
        """The live processes of this browser: in its session, or naming its profile folder."""
        found = []
        for proc in psutil.process_iter(["cmdline"]):
            try:
                in_session = os.getsid(proc.pid) == self.process.pid
            except OSError:
                in_session = False
            if in_session or any(self.profile in arg for arg in proc.info["cmdline"] or ()):
                found.append(proc)
        return found
