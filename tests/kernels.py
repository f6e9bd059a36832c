"""Jupyter kernels for the tests: ZeroMQ over Unix sockets (IPC), never TCP ports.

jupyter_client chooses a kernel's five TCP ports by binding port 0 and closing the sockets again; the
kernel binds those ports a second later. In between, any outgoing connection on the machine (the tests
open thousands, to Redis and the web app) may be given one of them as its own port: the kernel then
exits ("ZMQError: Address already in use") and its test waits 60 s for a reply that never comes
("Kernel didn't respond in 60 seconds"), seen with five test workers. A Unix socket's path, unique
to its kernel, cannot be taken that way. (JupyterLab's kernels keep TCP: one learner, few connections.)
"""
import tempfile
import uuid
from pathlib import Path

from nbclient import NotebookClient
from traitlets.config import Config


def kernel_config() -> Config:
    """A NotebookClient's config: its kernel's sockets are files named after a fresh UUID in the temp folder."""
    # jupyter_client appends -1 … -5 and removes the files when the kernel shuts down.
    sockets = Path(tempfile.gettempdir()) / f"kernel-{uuid.uuid4().hex}"
    return Config({"KernelManager": {"transport": "ipc", "ip": str(sockets)}})


class IPCNotebookClient(NotebookClient):
    """nbclient's NotebookClient, its kernel on Unix sockets (kernel_config)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("config", kernel_config())
        super().__init__(*args, **kwargs)
