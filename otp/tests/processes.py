"""Real processes and servers for the delivery tests: a private redis-server, Celery workers, the broker."""

import contextlib
import http.client
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import redis
from django.conf import settings
from kombu import pools as kombu_pools

from senders.tests.fake_gateway import FakeGateway
from zeckta.celery import app as celery_app
from zeckta.testing import free_port, wait_for

BASE_DIR = Path(__file__).resolve().parents[2]
HTTP_TOKEN = "test-gateway-token"


def redis_for(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)


def clean_queue(url: str) -> None:
    """Empties the Celery queues of the test run's own Redis db (REDIS_URL names a db for tests only)."""
    client = redis_for(url)
    for pattern in ["celery*", *(f"{queue}*" for queue in celery_app.conf.task_queues)]:
        for key in client.scan_iter(pattern):  # a queue and its priority lists (`sms\x06\x163` ...)
            client.delete(key)
    client.delete("unacked", "unacked_index", "unacked_mutex")


def reset_broker_pools() -> None:
    """Drops the app's cached broker connections, so a changed broker_url takes effect."""
    if celery_app._pool is not None:
        celery_app._pool.force_close_all()
        celery_app._pool = None
    celery_app.amqp._producer_pool = None
    # kombu keeps its own process-wide producer pools keyed by connection; one of them can hold the pool
    # just closed ("Acquire on closed pool" on the next publish): start those afresh too.
    kombu_pools.reset()


@contextlib.contextmanager
def broker_pointed_at(url: str) -> Iterator[None]:
    conf = celery_app.conf
    saved = conf.broker_url, conf.broker_write_url, conf.broker_read_url
    reset_broker_pools()
    conf.broker_url, conf.broker_write_url, conf.broker_read_url = url, None, None
    try:
        yield
    finally:
        reset_broker_pools()
        conf.broker_url, conf.broker_write_url, conf.broker_read_url = saved


class RedisServer:
    """A private redis-server on its own port: ours to stop and restart (the shared one never is)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.dir = tempfile.mkdtemp(prefix="zeckta-redis-")
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--dir",
                self.dir,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis_for(self.url)
        assert wait_for(lambda: _pings(client), timeout=10), "private redis-server did not start"

    def freeze(self) -> None:
        """The broker hangs without closing its socket (a stalled host): connects, never answers."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process is not None:
            self.thaw()  # a stopped process would not act on SIGTERM
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
            self.process = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


class WorkerProcess:
    """`celery -A zeckta worker` in a subprocess, on the test database and the given broker: with `node`, a
    node name of its own (as on another machine); with `beat`, an embedded beat (`-B`)."""

    def __init__(
        self,
        *,
        broker_url: str,
        gateway: FakeGateway,
        extra_env: dict[str, str] | None = None,
        node: str | None = None,
        beat: bool = False,
        pool: str = "solo",
    ) -> None:
        self.log = tempfile.NamedTemporaryFile(prefix="zeckta-worker-", suffix=".log", delete=False)  # noqa: SIM115
        self.final_output: str | None = None  # kept once stopped and the log file is gone
        db = settings.DATABASES["default"]
        env = {
            **os.environ,
            "PYTHONPATH": str(BASE_DIR),
            "DJANGO_SETTINGS_MODULE": "zeckta.settings_test",
            # The test database pytest-django created, where this test's committed rows are.
            "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
            "CONN_MAX_AGE": "0",
            "REDIS_URL": broker_url,
            "CELERY_BROKER_URL": broker_url,
            "SMS_BACKEND": "http",
            "SMS_HTTP_URL": gateway.url,
            "SMS_HTTP_TOKEN": HTTP_TOKEN,
            "SMS_HTTP_TIMEOUT": "2",
            "SMS_RETRY_BACKOFF_SECONDS": "0.2",
            "SMS_RETRY_BACKOFF_MAX_SECONDS": "0.5",
            **(extra_env or {}),
        }
        self.process = subprocess.Popen(
            # solo unless told: one process to kill. Time limits need `prefork` (its parent kills the child).
            [
                str(Path(sys.executable).with_name("celery")),
                "-A",
                "zeckta",
                "worker",
                "--pool",
                pool,
                *(["--concurrency", "1"] if pool == "prefork" else []),
                "--loglevel",
                "INFO",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "--hostname",
                f"{node or f'zeckta-test-{os.getpid()}'}@%h",
                *(["--beat"] if beat else []),
            ],
            cwd=BASE_DIR,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so kill() can never reach pytest
        )

    def output(self) -> str:
        if self.final_output is not None:
            return self.final_output
        return Path(self.log.name).read_text(errors="replace")

    def wait_ready(self, timeout: float = 30.0) -> None:
        ready = wait_for(lambda: " ready." in self.output() or self.process.poll() is not None, timeout=timeout)
        assert ready and self.process.poll() is None, f"worker did not start:\n{self.output()}"

    def kill(self) -> None:
        """SIGKILL to the worker's process group: a crash, with no chance to ack, retry or clean up."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.final_output is not None:
            return
        if self.process.poll() is None:
            self.process.terminate()  # warm shutdown
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.log.close()
        self.final_output = Path(self.log.name).read_text(errors="replace")
        os.unlink(self.log.name)


class WebProcess:
    """`gunicorn zeckta.wsgi` in a subprocess (its own master and sync workers), on the test database."""

    def __init__(
        self,
        *,
        redis_url: str,
        workers: int = 2,
        extra_env: dict[str, str] | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.port = free_port()
        self.log = tempfile.NamedTemporaryFile(prefix="zeckta-web-", suffix=".log", delete=False)  # noqa: SIM115
        db = settings.DATABASES["default"]
        env = {
            **os.environ,
            "PYTHONPATH": str(BASE_DIR),
            "DJANGO_SETTINGS_MODULE": "zeckta.settings_test",
            "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
            "REDIS_URL": redis_url,
            "CELERY_BROKER_URL": redis_url,
            **(extra_env or {}),
        }
        self.process = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("gunicorn")),
                "zeckta.wsgi",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                str(workers),
                "--worker-class",
                "sync",
                "--log-level",
                "warning",
                "--no-control-socket",
                *extra_args,
            ],
            cwd=BASE_DIR,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def wait_ready(self, timeout: float = 30.0) -> None:
        ready = wait_for(lambda: serves_http(self.port) or self.process.poll() is not None, timeout=timeout)
        assert ready and self.process.poll() is None, f"gunicorn did not start:\n{self.output()}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # graceful: the master stops its workers
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)
        self.log.close()
        os.unlink(self.log.name)


def serves_http(port: int) -> bool:
    """Whether a web process on `port` answers (its OpenAPI document: no key, no database)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        connection.request("GET", "/openapi.json", headers={"Host": "localhost", "X-Forwarded-Proto": "https"})
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()
