"""Fixtures for SMS delivery: the fake HTTP provider, the broker queue, and real worker processes."""

import shutil
from collections.abc import Callable, Iterator

import pytest
import redis

from otp.tests.processes import HTTP_TOKEN, RedisServer, WorkerProcess, clean_queue, redis_for
from senders.tests.fake_gateway import FakeGateway
from zeckta.celery import app as celery_app
from zeckta.testing import free_port


@pytest.fixture(params=["sql", "python"])
def otp_path(request, settings) -> str:
    """Runs a test against the PostgreSQL functions of otp/sql/ and against the Python version of
    the same rules (what SQLite and prepaid workspaces use): the two must answer alike."""
    settings.OTP_DATABASE_FUNCTIONS = request.param == "sql"
    return request.param


@pytest.fixture
def fake_gateway(settings) -> Iterator[FakeGateway]:
    """A running fake provider, with settings pointing the `http` backend at it."""
    gateway = FakeGateway().start()
    settings.SMS_BACKEND = "http"
    settings.SMS_HTTP_URL = gateway.url
    settings.SMS_HTTP_TOKEN = HTTP_TOKEN
    settings.SMS_HTTP_TIMEOUT = 2.0
    yield gateway
    gateway.stop()


@pytest.fixture
def closed_port_url() -> str:
    """A URL nobody listens on: connecting to it is refused."""
    return f"http://127.0.0.1:{free_port()}/sms"


@pytest.fixture
def broker_queue() -> Iterator[redis.Redis]:
    """The test's own Redis broker db, with the default `celery` queue emptied before and after."""
    url = celery_app.conf.broker_url
    assert url and url.startswith("redis://"), "these tests need the real Redis broker (REDIS_URL)"
    clean_queue(url)
    yield redis_for(url)
    clean_queue(url)


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    server = RedisServer()
    server.start()
    yield server
    server.cleanup()


@pytest.fixture
def start_worker(transactional_db) -> Iterator[Callable[..., WorkerProcess]]:
    """Starts worker processes on demand and stops them before the test database is flushed."""
    workers: list[WorkerProcess] = []

    def start(
        *, gateway: FakeGateway, broker_url: str | None = None, pool: str = "solo", beat: bool = False, **extra_env: str
    ) -> WorkerProcess:
        worker = WorkerProcess(
            broker_url=broker_url or celery_app.conf.broker_url,
            gateway=gateway,
            extra_env=extra_env,
            pool=pool,
            beat=beat,
        )
        workers.append(worker)
        worker.wait_ready()
        return worker

    yield start
    for worker in workers:
        worker.stop()
