"""Scale-out, proven on real processes: two web instances and two Celery workers, as on two machines (each its
own gunicorn master, each worker its own node name), on one PostgreSQL and one Redis (a private redis-server).

- one API key's rate limit holds across both web instances;
- every SMS of many requests through both instances reaches the (fake HTTP) provider exactly once;
- both workers are started with an embedded beat (`-B`), the mistake a second machine copied from the first
  would make: the beat lock lets one of them send, each periodic task once per interval, and the other
  takes over when the first dies;
- a worker killed while the provider holds its call loses nothing: after the lease the sweeper hands the
  SMS to the other worker, sent twice only if the provider had accepted the first call (at-least-once,
  deduplicated by the same `reference`).

The processes are started once for the module (about 10 s on two cores); each test makes its own rows.
"""

import http.client
import json
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest

from otp.models import SmsMessage
from otp.tests.processes import RedisServer, WebProcess, WorkerProcess
from senders.tests.factories import SenderNameFactory
from senders.tests.fake_gateway import Answer, FakeGateway
from workspaces.models import FraudGuardMode
from workspaces.tests.factories import WorkspaceFactory, issue_key
from zeckta.testing import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

KEY_RATE = 20  # requests per second of the key hammered through both instances
BEAT_INTERVAL_SECONDS = 1  # every periodic task, in these processes (settings_test)
BEAT_LOCK_TTL_SECONDS = 3
SMS_HTTP_TIMEOUT_SECONDS = 4  # how long a worker waits for the provider ...
SMS_SOFT_LIMIT_SECONDS = 6  # a send task's time limits, above that wait (settings refuse them at or over
SMS_HARD_LIMIT_SECONDS = 8  # the lease) ...
SMS_LEASE_SECONDS = 10  # ... and, longer than those, how long its claim on an SMS lasts
# A drain's calls in flight in these workers: with the provider's PROVIDER_DELAY_SECONDS, a drain that holds them
# all waits longer than its hold on the nudge key, and requests meanwhile ask for a drain the other worker takes.
# With the default (200) one drain could take all 300 SMS of the exactly-once test, and often did.
SMS_CONCURRENCY = 20
PROVIDER_DELAY_SECONDS = 0.3
WAIT_SECONDS = 30  # an upper bound for polling, not a timing assertion
SENT_LINE = re.compile(r"SMS ([0-9a-f-]{36}) sent through route")
SEND_RECEIVED = "Task otp.tasks.drain_sms["


@dataclass
class Deployment:
    redis: RedisServer
    gateway: FakeGateway
    web: list[WebProcess]
    workers: list[WorkerProcess]
    started: list[WorkerProcess] = field(default_factory=list)  # every worker ever started, to stop

    def start_worker(self, node: str) -> WorkerProcess:
        worker = WorkerProcess(
            broker_url=self.redis.url,
            gateway=self.gateway,
            node=node,
            beat=True,
            extra_env={
                "TEST_BEAT_INTERVAL_SECONDS": str(BEAT_INTERVAL_SECONDS),
                "BEAT_LOCK_TTL_SECONDS": str(BEAT_LOCK_TTL_SECONDS),
                "SMS_HTTP_TIMEOUT": str(SMS_HTTP_TIMEOUT_SECONDS),
                "SMS_TASK_SOFT_TIME_LIMIT_SECONDS": str(SMS_SOFT_LIMIT_SECONDS),
                "SMS_TASK_TIME_LIMIT_SECONDS": str(SMS_HARD_LIMIT_SECONDS),
                "SMS_PROCESSING_LEASE_SECONDS": str(SMS_LEASE_SECONDS),
                "SMS_SEND_CONCURRENCY": str(SMS_CONCURRENCY),
            },
        )
        self.started.append(worker)
        return worker

    def replace(self, dead: WorkerProcess, node: str) -> None:
        """The machine of a killed worker comes back: a new worker, so the next test has two again."""
        replacement = self.start_worker(node)
        replacement.wait_ready()
        self.workers[self.workers.index(dead)] = replacement


@pytest.fixture(scope="module")
def deployment(django_db_setup, django_db_blocker) -> Iterator[Deployment]:
    server = RedisServer()
    server.start()
    gateway = FakeGateway().start()
    web = [WebProcess(redis_url=server.url), WebProcess(redis_url=server.url)]
    setup = Deployment(redis=server, gateway=gateway, web=web, workers=[])
    setup.workers = [setup.start_worker("worker-a"), setup.start_worker("worker-b")]
    try:
        for process in [*web, *setup.workers]:
            process.wait_ready()
        yield setup
    finally:
        for worker in setup.started:
            worker.stop()
        for instance in web:
            instance.stop()
        gateway.stop()
        server.cleanup()


@pytest.fixture
def gateway(deployment) -> FakeGateway:
    deployment.gateway.reset()
    return deployment.gateway


def call(port: int, method: str, path: str, raw_key: str, body: dict | None = None) -> tuple[int, dict, dict]:
    """One HTTP call to a web instance, as a client behind the TLS proxy makes it: status, headers, JSON."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        headers = {"Host": "localhost", "X-Forwarded-Proto": "https", "Authorization": f"Bearer {raw_key}"}
        payload = None
        if body is not None:
            payload, headers["Content-Type"] = json.dumps(body), "application/json"
        connection.request(method, path, body=payload, headers=headers)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, json.loads(response.read())
    finally:
        connection.close()


def live_key(*, tps: int) -> str:
    # The fraud guard off: three hundred new numbers of one range within seconds, never verified, are SMS
    # pumping to it (its own tests are otp/tests/test_fraud_guard.py); these watch the processes.
    workspace = WorkspaceFactory(destination_limit=100, fraud_guard_mode=FraudGuardMode.OFF)
    SenderNameFactory(workspace=workspace, name="ZECKTA")
    return issue_key(workspace, tps=tps)[1]


def request_otp(port: int, raw_key: str, dest: str) -> tuple[int, dict, dict]:
    return call(port, "POST", "/v1/messaging/otp/request", raw_key, {"dest": dest, "src": "ZECKTA", "purpose": "LOGIN"})


# --- 1. The rate limit --------------------------------------------------------------------------------


def test_one_keys_rate_limit_holds_across_both_web_instances(deployment):
    raw_key = live_key(tps=KEY_RATE)
    ports = [instance.port for instance in deployment.web]
    deadline = time.monotonic() + 3.0  # seconds of hammering
    answers: list[tuple[int, int, dict, dict]] = []
    lock = threading.Lock()

    def hammer(index: int) -> None:
        port = ports[index % 2]  # three clients on each instance
        while time.monotonic() < deadline:
            status, headers, body = call(port, "GET", f"/v1/messaging/otp/{uuid.uuid4()}", raw_key)
            with lock:
                answers.append((port, status, headers, body))

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(hammer, range(6)))

    allowed = [(port, headers) for port, status, headers, _ in answers if status != 429]
    refused = [(headers, body) for _, status, headers, body in answers if status == 429]
    assert {status for _, status, _, _ in answers} == {404, 429}  # allowed: the unknown session's 404
    assert all(body["code"] == "RATE_LIMITED" and int(headers["retry-after"]) >= 1 for headers, body in refused)
    # Allowed calls grouped by the one-second window they were counted in (X-RateLimit-Reset is its end):
    # never more than the key's rate in a window, whichever instance answered.
    windows: dict[str, list[int]] = {}
    for port, headers in allowed:
        windows.setdefault(headers["x-ratelimit-reset"], []).append(port)
    assert max(len(ports_) for ports_ in windows.values()) <= KEY_RATE, windows
    # ... and the limit was reached in a window both instances served: one budget, shared.
    full = [ports_ for ports_ in windows.values() if len(ports_) == KEY_RATE]
    assert any(set(ports_) == set(ports) for ports_ in full), windows
    assert len(refused) > len(allowed)  # hammered well past the limit


# --- 2. Every SMS exactly once -------------------------------------------------------------------------


def test_every_sms_of_many_requests_through_both_instances_goes_out_exactly_once(deployment, gateway):
    raw_key = live_key(tps=10_000)
    dests = [f"+233202007{index:03d}" for index in range(300)]
    gateway.answer(*[Answer(delay=PROVIDER_DELAY_SECONDS) for _ in dests])  # a provider's latency
    logs_before = [len(worker.output()) for worker in deployment.workers]

    def ask(index: int) -> int:
        status, _, body = request_otp(deployment.web[index % 2].port, raw_key, dests[index])
        assert status == 200 and body["data"]["reused"] is False, (status, body)
        return status

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(ask, range(len(dests))))

    assert statuses == [200] * len(dests)
    assert wait_for(lambda: SmsMessage.objects.filter(status="sent").count() == len(dests), timeout=WAIT_SECONDS), (
        unsent_report(deployment, logs_before)
    )
    messages = {str(public_id) for public_id in SmsMessage.objects.values_list("public_id", flat=True)}
    references = Counter(request.json["reference"] for request in gateway.requests)
    assert len(messages) == len(dests)
    assert set(references) == messages  # none missing, none foreign
    assert max(references.values()) == 1  # no duplicate
    assert sorted(request.json["to"] for request in gateway.requests) == sorted(dests)
    # Both workers took a share, and together their logs account for every SMS once.
    sent_by = [
        SENT_LINE.findall(worker.output()[before:])
        for worker, before in zip(deployment.workers, logs_before, strict=True)
    ]
    assert all(sent_by), [len(ids) for ids in sent_by]
    assert Counter(sent_by[0] + sent_by[1]) == Counter(messages)


def unsent_report(deployment: Deployment, logs_before: list[int]) -> str:
    """What a failure needs to be understood: the unsent rows, and every line of the workers' logs since the
    test began that names one of them, a drain task or a warning."""
    unsent = list(
        SmsMessage.objects.exclude(status="sent").values_list(
            "public_id", "status", "attempts", "created_at", "next_attempt_at", "claimed_at"
        )
    )
    names = {str(row[0]) for row in unsent}
    lines = [
        line
        for worker, before in zip(deployment.workers, logs_before, strict=True)
        for line in worker.output()[before:].splitlines()
        if any(name in line for name in names) or "drain_sms" in line or "WARNING" in line or "ERROR" in line
    ]
    return f"{len(unsent)} unsent: {unsent}\n" + "\n".join(lines[-200:])


# --- 3. One beat -------------------------------------------------------------------------------------


def beat_sends(output: str) -> Counter:
    return Counter(re.findall(r"Sending due task (\S+) ", output))


def beat_holder(deployment: Deployment) -> WorkerProcess | None:
    holding = [
        worker
        for worker in deployment.workers
        if worker.output().rfind("took the beat lock") > worker.output().rfind("lost the beat lock")
    ]
    return holding[0] if len(holding) == 1 else None


def test_two_workers_started_with_beat_send_each_periodic_task_once_per_interval(deployment, settings):
    assert wait_for(lambda: beat_holder(deployment) is not None, timeout=WAIT_SECONDS)
    holder = beat_holder(deployment)
    standby = next(worker for worker in deployment.workers if worker is not holder)
    before = {id(worker): len(worker.output()) for worker in deployment.workers}
    window = 6.0  # seconds
    time.sleep(window)

    sent = beat_sends(holder.output()[before[id(holder)] :])
    assert beat_sends(standby.output()[before[id(standby)] :]) == Counter()
    assert set(sent) == set(settings.CELERY_BEAT_SCHEDULE)
    for name, count in sent.items():  # once per interval: 6 in 6 s, give or take the window's edges
        assert window / BEAT_INTERVAL_SECONDS - 2 <= count <= window / BEAT_INTERVAL_SECONDS + 1, (name, count)

    # The holder's machine dies: the standby takes over once the lock expires, and the schedule goes on.
    holder.kill()
    assert wait_for(lambda: "took the beat lock" in standby.output()[before[id(standby)] :], timeout=WAIT_SECONDS)
    taken_over = len(standby.output())
    assert wait_for(
        lambda: set(beat_sends(standby.output()[taken_over:])) == set(settings.CELERY_BEAT_SCHEDULE),
        timeout=WAIT_SECONDS,
    )
    deployment.replace(holder, "worker-c")


# --- 4. A worker killed mid-send ---------------------------------------------------------------------


def kill_the_worker_holding_the_call(
    deployment: Deployment, gateway: FakeGateway, answer: Answer
) -> tuple[SmsMessage, WorkerProcess, WorkerProcess]:
    """One OTP request; the provider holds the call; the worker making it is SIGKILLed, then the provider
    gives `answer` to nobody. Returns the SMS, the surviving worker and the dead one."""
    raw_key = live_key(tps=100)
    logs_before = [len(worker.output()) for worker in deployment.workers]
    gateway.answer(answer)

    status, _, body = request_otp(deployment.web[0].port, raw_key, "+233202007900")

    assert status == 200, body
    assert gateway.received.wait(timeout=WAIT_SECONDS), "the provider was never called"
    sending = [
        worker
        for worker, before in zip(deployment.workers, logs_before, strict=True)
        if SEND_RECEIVED in worker.output()[before:]
    ]
    assert len(sending) == 1, [worker.output()[-2000:] for worker in deployment.workers]
    dead = sending[0]
    dead.kill()
    answer.hold.set()  # type: ignore[union-attr]  # the provider answers now, to a caller that is gone
    message = SmsMessage.objects.get(session__public_id=body["data"]["sessionId"])
    assert (message.status, message.attempts) == ("processing", 1)
    survivor = next(worker for worker in deployment.workers if worker is not dead)
    return message, survivor, dead


def wait_sent(message: SmsMessage) -> SmsMessage:
    # The lease (6 s) runs out, the sweeper (every second, on whichever worker holds the beat lock) puts the
    # SMS back on the queue, the surviving worker claims it again and sends it.
    assert wait_for(lambda: SmsMessage.objects.get(pk=message.pk).status == "sent", timeout=WAIT_SECONDS), (
        SmsMessage.objects.get(pk=message.pk).status
    )
    return SmsMessage.objects.get(pk=message.pk)


def test_a_worker_killed_while_the_provider_holds_its_call_loses_nothing(deployment, gateway):
    """The provider had not accepted the first call (it answers 503 once the caller is gone): the SMS reaches
    it once more and is accepted once."""
    message, survivor, dead = kill_the_worker_holding_the_call(
        deployment, gateway, Answer(status=503, hold=threading.Event())
    )

    sent = wait_sent(message)

    assert (sent.attempts, sent.provider_message_id) == (2, "fake-2")
    assert sent.encrypted_text is None
    assert gateway.calls == 2  # the call the dead worker made (refused), and the one that was accepted
    assert SENT_LINE.findall(survivor.output()).count(str(message.public_id)) == 1
    assert {request.json["reference"] for request in gateway.requests} == {str(message.public_id)}
    deployment.replace(dead, "worker-d")


def test_a_worker_killed_after_the_provider_accepted_sends_it_twice_with_one_reference(deployment, gateway):
    """The at-least-once edge: the provider accepted the first call, but the worker died before it heard so.
    Nobody can tell that from a call that never arrived, so the SMS goes again, with the same `reference`
    (the provider's idempotency key) and the same code: at worst the user gets the same text twice."""
    message, _, dead = kill_the_worker_holding_the_call(deployment, gateway, Answer(status=200, hold=threading.Event()))

    sent = wait_sent(message)

    assert sent.attempts == 2
    assert gateway.calls == 2
    assert {request.json["reference"] for request in gateway.requests} == {str(message.public_id)}
    assert len(set(gateway.texts())) == 1  # the same code both times
    deployment.replace(dead, "worker-e")
