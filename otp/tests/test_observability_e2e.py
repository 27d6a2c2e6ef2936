"""Metrics and logs through real processes: gunicorn with several workers serves the API and /metrics, a
`celery -A zeckta worker` sends the SMS. A scrape, whichever gunicorn worker answers it, adds up the counts
of every web worker and of the Celery process (API.md section 12); the worker's log lines carry the requestId
of the request that caused the send.
"""

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.conf import settings
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from senders.tests.factories import SenderNameFactory
from workspaces.tests.factories import WorkspaceFactory, issue_key
from zeckta.testing import DEST, free_port, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

BASE_DIR = Path(__file__).resolve().parents[2]
WEB_WORKERS = 3
SCRAPES = 9  # with 3 workers taking turns at accept(), most likely more than one of them answers
DELIVERY_WAIT_SECONDS = 20  # an upper bound for polling, not a timing assertion


@dataclass
class Web:
    port: int
    process: subprocess.Popen
    log: Path

    def call(
        self,
        method: str,
        path: str,
        *,
        body: dict | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.request(
                method,
                path,
                body=json.dumps(body) if body is not None else None,
                headers={
                    "Host": "localhost",
                    "X-Forwarded-Proto": "https",
                    "Content-Type": "application/json",
                    **(headers or {}),
                },
            )
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            connection.close()

    def accept_queue(self) -> int:
        """Connections the kernel holds for the listening socket that no worker has accepted yet: for a
        listener, the rx_queue of /proc/net/tcp counts them."""
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].rpartition(":")[2], 16)
            if local_port == self.port and fields[3] == "0A":  # 0A: LISTEN
                return int(fields[4].partition(":")[2], 16)
        raise AssertionError(f"nothing listens on port {self.port}")

    def worker_pids(self) -> list[int]:
        """The master's children, from each process's stat line (its 4th field is the parent's pid)."""
        pids = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rpartition(")")[2].split()
            except OSError:
                continue  # ended meanwhile
            if int(fields[1]) == self.process.pid:
                pids.append(int(stat.parent.name))
        return pids


@pytest.fixture
def metrics_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="zeckta-metrics-test-") as directory:
        yield Path(directory)


@pytest.fixture
def web(metrics_dir: Path) -> Iterator[Web]:
    """gunicorn as deployed (gunicorn.conf.py from the working directory), on the test database."""
    db = settings.DATABASES["default"]
    port = free_port()
    log = Path(tempfile.mkstemp(prefix="zeckta-web-", suffix=".log")[1])
    env = {
        **os.environ,
        "PYTHONPATH": str(BASE_DIR),
        "DJANGO_SETTINGS_MODULE": "zeckta.settings_test",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "REDIS_URL": settings.REDIS_URL,
        "METRICS_DIR": str(metrics_dir),
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    with log.open("wb") as output:
        process = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("gunicorn")),
                "zeckta.wsgi",
                "-b",
                f"127.0.0.1:{port}",
                "-w",
                str(WEB_WORKERS),
                "-k",
                "sync",
            ],
            cwd=BASE_DIR,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Web(port, process, log)
    try:
        assert wait_for(lambda: _answers(server), timeout=30), f"gunicorn did not start:\n{log.read_text()}"
        yield server
    finally:
        process.terminate()
        process.wait(timeout=15)
        log.unlink()


def _answers(web: Web) -> bool:
    try:
        return web.call("GET", "/healthz")[0] == 200
    except OSError:
        return False


def scrape(web: Web) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, headers, body = web.call("GET", "/metrics")
    assert status == 200, body
    assert headers["Content-Type"].startswith("text/plain")
    return _parse_scrape(body)


def _read_all(connection: socket.socket) -> bytes:
    """The body of one raw HTTP/1.1 answer (chunked or not), after a 200 status."""
    response = http.client.HTTPResponse(connection)
    response.begin()
    assert response.status == 200, response.status
    return response.read()


def _parse_scrape(body: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def _counted_by(metrics_dir: Path, pid: int, status: str) -> float:
    files = [str(path) for path in metrics_dir.glob(f"web-*/counter_{pid}.db")]
    return sum(
        sample.value
        for family in MultiProcessCollector.merge(files)
        for sample in family.samples
        if sample.name == "zeckta_otp_verifications_total" and sample.labels == {"status": status}
    )


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def client_key() -> str:
    workspace = WorkspaceFactory(slug="acme-e2e")
    SenderNameFactory(workspace=workspace, name="ZECKTA")
    return issue_key(workspace, name="e2e")[1]


def test_a_scrape_adds_up_every_web_worker_and_the_celery_worker(
    web, metrics_dir, fake_gateway, broker_queue, start_worker, client_key
):
    worker = start_worker(gateway=fake_gateway, METRICS_DIR=str(metrics_dir))
    auth = {"Authorization": f"Bearer {client_key}"}

    status, headers, body = web.call(
        "POST", "/v1/messaging/otp/request", body={"dest": DEST, "src": "ZECKTA", "purpose": "LOGIN"}, headers=auth
    )
    assert status == 200, body
    request_id = headers["X-Request-ID"]
    session_id = json.loads(body)["data"]["sessionId"]
    assert (
        web.call(
            "POST", "/v1/messaging/otp/request", body={"dest": DEST, "src": "ZECKTA", "purpose": "LOGIN"}, headers=auth
        )[0]
        == 200
    )  # reused
    assert (
        web.call(
            "POST", "/v1/messaging/otp/request", body={"dest": "+1", "src": "ZECKTA", "purpose": "LOGIN"}, headers=auth
        )[0]
        == 400
    )  # refused
    assert wait_for(lambda: fake_gateway.calls == 1, timeout=DELIVERY_WAIT_SECONDS), worker.output()
    code = re.search(r"\b\d{6}\b", fake_gateway.texts()[0]).group()
    wrong = str((int(code) + 1) % 10 ** len(code)).zfill(len(code))
    for attempt, expected in ((wrong, 400), (code, 200)):
        assert (
            web.call("POST", "/v1/messaging/otp/verify", body={"sessionId": session_id, "code": attempt}, headers=auth)[
                0
            ]
            == expected
        )
    assert wait_for(
        lambda: value(scrape(web), "zeckta_sms_total", route="default", status="sent") == 1,
        timeout=DELIVERY_WAIT_SECONDS,
    )

    for _ in range(SCRAPES):  # the same totals whichever web worker answers
        samples = scrape(web)
        assert value(samples, "zeckta_otp_requests_total", outcome="new") == 1
        assert value(samples, "zeckta_otp_requests_total", outcome="reused") == 1
        assert value(samples, "zeckta_otp_requests_total", outcome="VALIDATION_ERROR") == 1
        assert value(samples, "zeckta_otp_verifications_total", status="INVALID") == 1
        assert value(samples, "zeckta_otp_verifications_total", status="APPROVED") == 1
        # Counted by the Celery worker, a process gunicorn knows nothing of.
        assert value(samples, "zeckta_sms_total", route="default", status="sent") == 1
        assert value(samples, "zeckta_sms_units_total", country="GH") == 1
        assert value(samples, "zeckta_sms_send_seconds_count", route="default") == 1
        assert value(samples, "zeckta_http_request_seconds_count", view="otp-request") == 3
        assert value(samples, "zeckta_http_request_seconds_count", view="otp-verify") == 2
        assert value(samples, "zeckta_outbox_pending") == 0
        assert value(samples, "zeckta_outbox_oldest_seconds") == 0
    groups = sorted(path.name.split("-")[0] for path in metrics_dir.iterdir())
    assert groups == ["web", "worker"]

    # One requestId finds the request and the worker's lines for the send it caused.
    worker.stop()
    lines = [json.loads(line) for line in worker.output().splitlines() if line.startswith("{")]
    sent = [line for line in lines if line.get("requestId") == request_id]
    assert any("sent through route default" in line["message"] for line in sent), worker.output()
    sent_line = next(line for line in sent if "sent through route" in line["message"])
    assert sent_line["workspace"] == "acme-e2e" and sent_line["keyPrefix"] == client_key[:16]
    assert sent_line["route"] == "default"
    assert code not in worker.output() and client_key not in worker.output()


def test_counts_survive_a_web_worker_that_dies(web, metrics_dir, client_key):
    auth = {"Authorization": f"Bearer {client_key}"}
    for _ in range(6):
        assert (
            web.call(
                "POST",
                "/v1/messaging/otp/verify",
                body={"sessionId": "0b7c1f9e-0d5a-4c1e-9a57-3c1a2b9d8e01", "code": "123456"},
                headers=auth,
            )[0]
            == 404
        )
    before = value(scrape(web), "zeckta_otp_verifications_total", status="NOT_FOUND")
    assert before == 6

    # A worker that counted some of them: its own file says so.
    victim = next(pid for pid in web.worker_pids() if _counted_by(metrics_dir, pid, "NOT_FOUND"))
    os.kill(victim, signal.SIGKILL)
    assert wait_for(lambda: victim not in web.worker_pids() and len(web.worker_pids()) == WEB_WORKERS, timeout=30)

    for _ in range(SCRAPES):
        assert value(scrape(web), "zeckta_otp_verifications_total", status="NOT_FOUND") == 6


def test_the_first_scrape_of_a_fresh_web_group_shows_the_known_series_at_0_and_zeros_never_double(
    web, metrics_dir, client_key
):
    known = {
        "zeckta_webhook_deliveries_total": ("outcome", "delivered"),
        "zeckta_otp_verifications_total": ("status", "NOT_FOUND"),
        "zeckta_rate_limited_total": ("reason", "destination"),
        "zeckta_otp_requests_total": ("outcome", "INSUFFICIENT_BALANCE"),
    }
    first = scrape(web)  # nothing has been counted yet: gunicorn was only asked /healthz
    shown = {name: first.get((name, ((label, label_value),))) for name, (label, label_value) in known.items()}
    assert shown == dict.fromkeys(known, 0.0)  # present, at 0
    assert first.get(("zeckta_sms_total", (("route", "default"), ("status", "delivered")))) == 0.0

    auth = {"Authorization": f"Bearer {client_key}"}
    assert (
        web.call(
            "POST",
            "/v1/messaging/otp/verify",
            body={"sessionId": "0b7c1f9e-0d5a-4c1e-9a57-3c1a2b9d8e01", "code": "123456"},
            headers=auth,
        )[0]
        == 404
    )

    def writers() -> list[Path]:
        return [
            path
            for path in metrics_dir.glob("web-*/counter_*.db")
            if any(
                sample.name == "zeckta_webhook_deliveries_total"
                for family in MultiProcessCollector.merge([str(path)])
                for sample in family.samples
            )
        ]

    # Each worker that answers a scrape writes its zeros too; they must add up to nothing. Every worker is
    # made to answer one: a sync worker that accepted a connection reads nothing else until that request is
    # whole, so with one unfinished request per worker, and none of them left waiting in the listen queue,
    # each worker holds exactly one of them.
    held = [socket.create_connection(("127.0.0.1", web.port), timeout=10) for _ in range(WEB_WORKERS)]
    try:
        for connection in held:
            connection.sendall(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nX-Forwarded-Proto: https\r\n")
        assert wait_for(lambda: web.accept_queue() == 0, timeout=10)
        for connection in held:
            connection.sendall(b"Connection: close\r\n\r\n")
        for connection in held:
            samples = _parse_scrape(_read_all(connection))
            assert value(samples, "zeckta_otp_verifications_total", status="NOT_FOUND") == 1
            assert value(samples, "zeckta_webhook_deliveries_total", outcome="delivered") == 0
    finally:
        for connection in held:
            connection.close()
    assert len(writers()) == WEB_WORKERS  # every process holds the zeros, and the sum is still 0
