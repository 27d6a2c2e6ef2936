"""Helpers shared by the test suites of every app: clients, envelope assertions, races, commands.

Fixtures stay in conftest.py files; what a test imports lives here (and factories in each app's
tests/factories.py), so no test module imports conftest. Nothing here imports an app.
"""

import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from io import StringIO
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.db import connection, connections
from rest_framework.test import APIClient

DEST = "+233202007745"  # a valid Ghanaian mobile number


def api_client(raw_key: str) -> APIClient:
    """An APIClient that sends `Authorization: Bearer <raw_key>` on every call."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    return client


def assert_api_error(response: Any, *, status: int, code: str, data: Any = None) -> dict[str, Any]:
    """The error envelope of API.md section 1: status, code, success false, `data` (null unless given),
    a message, the requestId echoed in X-Request-ID, never cached. Returns the body."""
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["success"] is False and body["code"] == code and body["data"] == data, body
    assert isinstance(body["message"], str) and body["message"]
    assert uuid.UUID(body["requestId"]) and body["requestId"] == response["X-Request-ID"]
    assert response["Cache-Control"] == "no-store"
    return body


def run_together(count: int, action: Callable[[int], object]) -> list:
    """Runs action(i) in `count` threads released at the same moment by a Barrier; returns the results.

    Each thread has its own database connection (Django's are per thread) and closes it at the end.
    A thread that raises fails the caller, so a race cannot hide behind a swallowed exception.
    """
    barrier = threading.Barrier(count)
    results: list = [None] * count
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[index] = action(index)
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    return results


def wait_for(predicate: Callable[[], object], *, timeout: float = 20.0, interval: float = 0.05) -> bool:
    """Polls `predicate` until it is truthy or `timeout` seconds pass (a bound, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --- Operator commands -------------------------------------------------------------------------


def run_command(*args: str) -> list[str]:
    """Runs a management command in-process and returns its stdout lines."""
    stdout, stderr = StringIO(), StringIO()
    call_command(*args, stdout=stdout, stderr=stderr)
    return stdout.getvalue().splitlines()


def manage(*args: str) -> subprocess.CompletedProcess:
    """Runs `manage.py` as operators do, against the test database."""
    db = settings.DATABASES["default"]
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "zeckta.settings_test",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def assert_one_line_error(result: subprocess.CompletedProcess, fragment: str) -> None:
    assert result.returncode != 0
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("CommandError: ")
    assert fragment in lines[0]
    assert "Traceback" not in result.stderr


# --- A dependency that hangs ------------------------------------------------------------------------


class SilentServer:
    """Accepts TCP connections and never says a word: a dependency that hangs (a frozen host)."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._stopping = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        self.listener.settimeout(0.1)
        while not self._stopping:
            try:
                self.accepted.append(self.listener.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    def stop(self) -> None:
        self._stopping = True
        self._thread.join(timeout=5)
        for peer in self.accepted:
            peer.close()
        self.listener.close()


def hung_database(monkeypatch: Any, silent_server: SilentServer, *, connect_timeout_seconds: int = 2) -> None:
    """Database connections opened from now on (by a new thread: this one keeps its own) go to a server that
    accepts and never answers, with this connect timeout. `monkeypatch` puts the settings back."""
    options = {**connections.settings["default"].get("OPTIONS", {}), "connect_timeout": connect_timeout_seconds}
    hung = {**connections.settings["default"], "HOST": "127.0.0.1", "PORT": str(silent_server.port), "OPTIONS": options}
    monkeypatch.setitem(connections.settings, "default", hung)


def in_a_thread_of_its_own(call: Callable[[], Any], *, timeout: float = 30.0) -> Any:
    """`call`'s result, run in a new thread: Django opens it a connection of its own (closed after)."""
    results: list[Any] = []

    def run() -> None:
        try:
            results.append(call())
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=timeout)
    assert results, f"no answer within {timeout} s"
    return results[0]
