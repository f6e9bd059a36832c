"""A class on one server: ports of one's own, a private state folder, another user's port named as theirs."""
import os
import socket

from ebookstore.config import DEFAULT_REDIS_PORT, DEFAULT_SMTP_PORT, DEFAULT_WEB_PORT, Settings, user_port_offset
from ebookstore.credentials import private_home
from ebookstore.runtime import processes


def test_default_ports_differ_per_user_and_never_meet_across_services():
    ports = {}
    for uid in [0, *range(1000, 1498)]:
        offset = user_port_offset(uid)
        for base in (DEFAULT_REDIS_PORT, DEFAULT_WEB_PORT, DEFAULT_SMTP_PORT):
            assert (base + offset) not in ports, (uid, base + offset, ports.get(base + offset))
            ports[base + offset] = uid
    assert user_port_offset(0) == 0 and user_port_offset(1000) == 10 * (1 + 1000 % 498)


def test_settings_use_the_users_ports_unless_told(monkeypatch):
    for name in ("EBOOKSTORE_REDIS_PORT", "EBOOKSTORE_WEB_PORT", "EBOOKSTORE_SMTP_PORT"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings.from_env()
    assert settings.redis_port == DEFAULT_REDIS_PORT + user_port_offset()
    assert Settings.from_env({"EBOOKSTORE_REDIS_PORT": "7000"}).redis_port == 7000


def test_the_state_folder_is_private(tmp_path):
    home = tmp_path / "var"
    home.mkdir(mode=0o755)
    os.chmod(home, 0o755)
    private_home(home)
    assert home.stat().st_mode & 0o777 == 0o700
    assert private_home(tmp_path / "new" / "var").stat().st_mode & 0o777 == 0o700


def test_the_owner_of_a_listening_port_is_known():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert processes.listener_uid(port) == os.getuid()
    assert processes.listener_uid(port) is None
