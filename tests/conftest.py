"""Fixtures: a real Redis for the session, a fresh state folder and Stack per test."""
import itertools
import os
from pathlib import Path

import pytest

from ebookstore import queues
from ebookstore.config import Settings
from ebookstore.runtime import processes
from ebookstore.runtime.stack import Stack

_numbers = itertools.count(1)


def new_tag() -> str:
    return f"{os.environ['EBOOKSTORE_TEST_TAG_PREFIX']}-{next(_numbers)}"


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """A redis-server of our own on a free port, for the whole session."""
    settings = Settings.from_env(home=tmp_path_factory.mktemp("redis-home"), redis_port=processes.free_port())
    with Stack(settings, tag=new_tag()) as stack:
        stack.redis()
        yield settings.redis_url


@pytest.fixture
def settings(tmp_path: Path, redis_url) -> Settings:
    """Fresh settings per test: a new state folder, an emptied Redis, free ports."""
    settings = Settings.from_env(
        home=tmp_path / "home", external_redis_url=redis_url, web_port=processes.free_port(),
        smtp_port=processes.free_port(), mail_delay=0.0, smtp_url=None,
        dashboard_user="tutor", dashboard_password="test-password",
    )
    queues.connect(settings).flushdb()
    return settings


@pytest.fixture
def stack(settings):
    """A Stack for the test's own processes; everything it started is stopped afterwards."""
    stack = Stack(settings, tag=new_tag(), stop_at_exit=False)
    yield stack
    stack.stop(timeout=3)
    assert processes.tagged(stack.tag) == [], "the test's processes must all be stopped"


@pytest.fixture
def redis(settings):
    return queues.connect(settings)
