"""Keys, workspaces and sender names are cached in each process (zeckta.localcache) for at most
LOCAL_CACHE_SECONDS: a revocation or a suspension made anywhere reaches every web process within it.

Proven on the real thing: gunicorn with several sync workers, each with its own cache, warmed with the
key, then the change made from this process (another process, as an operator's would be).
"""

import http.client
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings

from workspaces.services import api_key_revoke, workspace_update
from workspaces.tests.factories import WorkspaceFactory, issue_key
from zeckta.testing import free_port, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

BASE_DIR = Path(__file__).resolve().parents[2]
WORKERS = 3
CALLS = 40  # per check: with 3 workers taking turns at accept(), every one of them answers some
CACHE_SECONDS = 1.0


@pytest.fixture
def web() -> Iterator[int]:
    """gunicorn on the test database, WORKERS sync workers; yields its port."""
    db = settings.DATABASES["default"]
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(BASE_DIR),
        "DJANGO_SETTINGS_MODULE": "zeckta.settings_test",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "REDIS_URL": settings.REDIS_URL,
        "LOCAL_CACHE_SECONDS": str(CACHE_SECONDS),
    }
    process = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("gunicorn")),
            "zeckta.wsgi",
            "-b",
            f"127.0.0.1:{port}",
            "-w",
            str(WORKERS),
            "-k",
            "sync",
            "--log-level",
            "warning",
        ],
        cwd=BASE_DIR,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        assert wait_for(lambda: _answers(port), timeout=30), "gunicorn did not start"
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


def _answers(port: int) -> bool:
    try:
        return _get_status(port, "") > 0
    except OSError:
        return False


def _get_status(port: int, raw_key: str) -> int:
    """GET a session that does not exist: 404 for a valid key, 401 revoked, 403 suspended."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request(
            "GET",
            f"/v1/messaging/otp/{uuid.uuid4()}",
            headers={"Host": "localhost", "Authorization": f"Bearer {raw_key}", "X-Forwarded-Proto": "https"},
        )
        return connection.getresponse().status
    finally:
        connection.close()


def _statuses(port: int, raw_key: str) -> set[int]:
    return {_get_status(port, raw_key) for _ in range(CALLS)}


def test_a_revoked_key_is_refused_by_every_process_within_the_cache_time(web):
    workspace = WorkspaceFactory()
    api_key, raw_key = issue_key(workspace, tps=10_000)
    assert _statuses(web, raw_key) == {404}  # every worker has now cached the key as valid

    api_key_revoke(prefix=api_key.prefix)
    time.sleep(CACHE_SECONDS + 0.1)

    assert _statuses(web, raw_key) == {401}


def test_a_suspended_workspace_is_refused_by_every_process_within_the_cache_time(web):
    workspace = WorkspaceFactory()
    _, raw_key = issue_key(workspace, tps=10_000)
    assert _statuses(web, raw_key) == {404}

    workspace_update(workspace=workspace, values={"is_active": False})
    time.sleep(CACHE_SECONDS + 0.1)

    assert _statuses(web, raw_key) == {403}
