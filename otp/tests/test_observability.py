"""What the service tells operators about real traffic (API.md section 12): the counts a scrape of /metrics
shows after requests, sends, receipts, verifies and webhooks; the outbox gauges; and JSON log lines that
carry the request's context and never a secret.

In this process metrics stay in its own registry (no gunicorn or Celery process group), so each test reads
how much a count moved; test_observability_e2e adds them up across real processes.
"""

import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta

import pytest
import time_machine
from django.conf import settings
from django.urls import reverse
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from otp.delivery import SMS_QUEUE, SmsRetryLater, sms_deliver
from otp.models import SmsAttempt, SmsMessage
from otp.tests.helpers import request_otp, resend, verify, wrong_code
from webhooks.delivery import WEBHOOKS_QUEUE, webhook_deliver
from webhooks.models import WebhookDelivery
from workspaces.tests.factories import issue_key
from zeckta import metrics
from zeckta.api.logging import JsonLogFormatter, RequestIdFilter
from zeckta.celery import app as celery_app
from zeckta.taskcontext import HEADER_KEY_PREFIX, HEADER_REQUEST_ID, HEADER_WORKSPACE
from zeckta.testing import DEST, api_client

pytestmark = pytest.mark.django_db

RECEIPT_TOKEN = "receipt-token-of-the-observability-tests"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(client) -> Samples:
    response = client.get("/metrics")  # the test client's REMOTE_ADDR is loopback
    assert response.status_code == 200, response.content
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


class Moves:
    """How far each count moved between two scrapes."""

    def __init__(self, before: Samples, after: Samples) -> None:
        self.before, self.after = before, after

    def __call__(self, name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return self.after.get(key, 0.0) - self.before.get(key, 0.0)

    def of(self, expected: dict[str, float]) -> dict[str, float]:
        """The moves of the series `expected` names as Prometheus does (`name{label="value"}`), to compare
        with it whole: a failure shows every count at once."""
        moves = {}
        for series in expected:
            name, _, labels = series.partition("{")
            moves[series] = self(name, **dict(re.findall(r'(\w+)="([^"]*)"', labels)))
        return moves


@pytest.fixture
def counted(client) -> Iterator:
    """Call it after the traffic: the moves since the test started."""
    before = scrape(client)
    yield lambda: Moves(before, scrape(client))


def post_receipt(client, provider_id: str, status: str):
    response = client.post(
        reverse("sms-receipt", args=["default"]),
        {"id": provider_id, "status": status},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {RECEIPT_TOKEN}",
    )
    assert response.status_code == 200


# Every series of the contract's counters whose label values are known in advance (API.md sections 3, 4 and
# 12), written out from the contract rather than from the code that declares them.
KNOWN_AT_START = [
    *(
        f'zeckta_otp_requests_total{{outcome="{outcome}"}}'
        for outcome in (
            "new",
            "reused",
            "resent",
            "replayed",
            "VALIDATION_ERROR",
            "MALFORMED_JSON",
            "INSUFFICIENT_BALANCE",
            "DESTINATION_RATE_LIMITED",
            "DESTINATION_BLOCKED",
            "WORKSPACE_QUOTA_EXCEEDED",
            "IDEMPOTENCY_KEY_REUSED",
            "SESSION_NOT_PENDING",
            "RESEND_LIMIT_REACHED",
            "RESEND_TOO_SOON",
            "EXPIRED",
            "NOT_FOUND",
            "SERVICE_UNAVAILABLE",
            "INTERNAL_ERROR",
        )
    ),
    *(
        f'zeckta_otp_verifications_total{{status="{status}"}}'
        for status in (
            "APPROVED",
            "INVALID",
            "EXPIRED",
            "MAX_ATTEMPTS_REACHED",
            "ALREADY_USED",
            "CANCELED",
            "NOT_FOUND",
        )
    ),
    *(
        f'zeckta_sms_total{{route="default",status="{status}"}}'
        for status in ("sent", "retried", "failed", "delivered", "undeliverable", "rejected", "expired")
    ),
    *(
        f'zeckta_rate_limited_total{{reason="{reason}"}}'
        for reason in (
            "key_rate",
            "auth_failures",
            "destination",
            "wrong_codes",
            "country",
            "daily_cap",
            "resend_cooldown",
        )
    ),
    *(f'zeckta_webhook_deliveries_total{{outcome="{outcome}"}}' for outcome in ("delivered", "retrying", "given_up")),
    *(
        f'zeckta_fraud_decisions_total{{mode="{mode}",rule="{rule}"}}'
        for rule in ("range_velocity", "range_conversion", "country_velocity", "country_conversion")
        for mode in ("enforce", "shadow")
    ),
    "zeckta_fraud_refused_total{}",
]
# Labels whose values are not all known in advance: the routes operators configure.
OPEN_LABELS = {"route"}


def series(name: str, labels: dict[str, str]) -> str:
    return name + "{" + ",".join(f'{label}="{value}"' for label, value in labels.items()) + "}"


def undeclared(samples: Samples) -> list[str]:
    """The series of a declared counter whose label values were not declared in advance."""
    declared = {metric._name + "_total": vocabulary for metric, vocabulary in metrics._known}
    return [
        series(name, dict(labels))
        for name, labels in samples
        if name in declared
        and any(value not in declared[name][label] for label, value in labels if label not in OPEN_LABELS)
    ]


def code_sent(fake_gateway) -> str:
    return re.search(r"\b\d{6}\b", fake_gateway.texts()[-1]).group()


@pytest.fixture
def receipts(settings) -> None:
    settings.SMS_HTTP_RECEIPT_TOKEN = RECEIPT_TOKEN


def test_a_flow_moves_each_count_once(api, client, counted, fake_gateway, receiver, receipts):
    api.post("/v1/messaging/webhooks", {"url": receiver.url, "events": ["otp.approved"]}, format="json")
    session_id = request_otp(api, DEST).json()["data"]["sessionId"]
    assert request_otp(api, DEST).json()["data"]["reused"] is True
    assert request_otp(api, "+1").status_code == 400
    assert sms_deliver(message_id=SmsMessage.objects.get().pk) == "sent"
    post_receipt(client, SmsAttempt.objects.get().provider_message_id, "delivered")
    code = code_sent(fake_gateway)
    assert verify(api, session_id, wrong_code(code)).status_code == 400
    assert verify(api, session_id, code).status_code == 200
    assert verify(api, session_id, code).status_code == 409
    assert webhook_deliver(delivery_id=WebhookDelivery.objects.get().pk) == "delivered"

    expected = {
        'zeckta_otp_requests_total{outcome="new"}': 1,
        'zeckta_otp_requests_total{outcome="reused"}': 1,
        'zeckta_otp_requests_total{outcome="VALIDATION_ERROR"}': 1,
        'zeckta_sms_total{route="default",status="sent"}': 1,
        'zeckta_sms_total{route="default",status="delivered"}': 1,
        'zeckta_sms_units_total{country="GH"}': 1,
        'zeckta_sms_send_seconds_count{route="default"}': 1,
        'zeckta_otp_verifications_total{status="INVALID"}': 1,
        'zeckta_otp_verifications_total{status="APPROVED"}': 1,
        'zeckta_otp_verifications_total{status="ALREADY_USED"}': 1,
        'zeckta_webhook_deliveries_total{outcome="delivered"}': 1,
        'zeckta_http_request_seconds_count{view="otp-request"}': 3,
        'zeckta_http_request_seconds_count{view="otp-verify"}': 3,
        'zeckta_http_responses_total{view="otp-verify",status="400"}': 1,
    }
    moves = counted()
    assert moves.of(expected) == expected
    assert undeclared(moves.after) == []


def test_label_values_never_name_a_destination_a_session_or_a_key(api, client, raw_key, fake_gateway):
    session_id = request_otp(api, DEST).json()["data"]["sessionId"]
    verify(api, session_id, "000000")
    api.get(f"/v1/messaging/otp/{session_id}")
    api.get("/v1/messaging/no/such/route/+233202007745")

    text = client.get("/metrics").content.decode()
    for value in (DEST, DEST[1:], session_id, raw_key, raw_key[:16]):
        assert value not in text
    assert 'view="zeckta.urls.api_not_found"' in text  # an unknown route is one label value, whatever its path


def test_each_limit_is_counted_under_its_reason(api, workspace, sender, client, counted, settings):
    workspace.destination_limit, workspace.otp_reuse_enabled = 1, False
    workspace.save()
    settings.AUTH_FAILURE_LIMIT_PER_MINUTE = 1
    slow_key = api_client(issue_key(workspace, name="slow", tps=1)[1])
    with time_machine.travel(timezone.now(), tick=False):  # all in one second, and one minute
        session_id = request_otp(api, DEST).json()["data"]["sessionId"]
        assert request_otp(api, DEST).status_code == 429  # DESTINATION_RATE_LIMITED
        assert resend(api, session_id).status_code == 429  # RESEND_TOO_SOON
        assert slow_key.get(f"/v1/messaging/otp/{session_id}").status_code == 200
        assert slow_key.get(f"/v1/messaging/otp/{session_id}").status_code == 429  # RATE_LIMITED
        for expected in (401, 429):  # past the failures one address may make
            assert client.get(f"/v1/messaging/otp/{session_id}").status_code == expected

    expected = {
        'zeckta_rate_limited_total{reason="destination"}': 1,
        'zeckta_rate_limited_total{reason="resend_cooldown"}': 1,
        'zeckta_rate_limited_total{reason="key_rate"}': 1,
        'zeckta_rate_limited_total{reason="auth_failures"}': 1,
        'zeckta_otp_requests_total{outcome="DESTINATION_RATE_LIMITED"}': 1,
        'zeckta_otp_requests_total{outcome="RESEND_TOO_SOON"}': 1,
    }
    moves = counted()
    assert moves.of(expected) == expected
    assert undeclared(moves.after) == []  # each reason is one the code declares


def test_failed_sends_and_webhooks_are_counted_by_outcome(api, counted, fake_gateway, receiver, settings):
    settings.SMS_MAX_SEND_ATTEMPTS = 2
    fake_gateway.answer(503, 503)
    receiver.reply(500, 500)
    api.post("/v1/messaging/webhooks", {"url": receiver.url, "events": ["otp.delivery_failed"]}, format="json")
    request_otp(api, DEST)
    message = SmsMessage.objects.get()
    with pytest.raises(SmsRetryLater):  # the first 503: the worker's task would retry
        sms_deliver(message_id=message.pk)
    assert sms_deliver(message_id=message.pk) == "failed"  # the last attempt on the only route
    delivery = WebhookDelivery.objects.get()
    assert webhook_deliver(delivery_id=delivery.pk) == "pending"
    WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now(), retry_until=timezone.now())
    assert webhook_deliver(delivery_id=delivery.pk) == "given_up"

    expected = {
        'zeckta_sms_total{route="default",status="retried"}': 1,
        'zeckta_sms_total{route="default",status="failed"}': 1,
        'zeckta_sms_send_seconds_count{route="default"}': 2,
        'zeckta_sms_units_total{country="GH"}': 0,
        'zeckta_webhook_deliveries_total{outcome="retrying"}': 1,
        'zeckta_webhook_deliveries_total{outcome="given_up"}': 1,
    }
    moves = counted()
    assert moves.of(expected) == expected
    assert undeclared(moves.after) == []


def test_a_fresh_process_shows_every_known_series_at_0_from_its_first_scrape():
    """Before any traffic, as Prometheus' instrumentation guidance asks: rate() and alerts work from the start."""
    db = settings.DATABASES["default"]
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "zeckta.settings_test",
        "REDIS_URL": settings.REDIS_URL,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # this process's own registry, as runserver has
    first_scrape = (
        "import django; django.setup(); from django.test import Client; "
        "import sys; sys.stdout.write(Client().get('/metrics').content.decode())"
    )
    text = subprocess.run(
        [sys.executable, "-c", first_scrape],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout

    samples = {
        series(sample.name, sample.labels): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    assert {name: samples.get(name) for name in KNOWN_AT_START} == dict.fromkeys(KNOWN_AT_START, 0.0)
    # The units per country cannot be known in advance: none yet.
    assert not [name for name in samples if name.startswith("zeckta_sms_units_total")]


def test_the_outbox_gauges_show_what_waits_and_for_how_long(api, client, fake_gateway):
    assert scrape(client)[("zeckta_outbox_pending", ())] == 0
    request_otp(api, DEST)
    request_otp(api, "+233202007746")

    with time_machine.travel(timezone.now() + timedelta(seconds=90), tick=False):
        samples = scrape(client)
    assert samples[("zeckta_outbox_pending", ())] == 2
    assert 89 <= samples[("zeckta_outbox_oldest_seconds", ())] <= 91

    for message in SmsMessage.objects.all():
        sms_deliver(message_id=message.pk)
    samples = scrape(client)
    assert (samples[("zeckta_outbox_pending", ())], samples[("zeckta_outbox_oldest_seconds", ())]) == (0, 0)


def test_reading_the_outbox_is_one_query(client, django_assert_num_queries):
    client.get("/metrics")
    with django_assert_num_queries(1):
        assert client.get("/metrics").status_code == 200


# --- Logs --------------------------------------------------------------------------------------


class JsonLines(logging.Handler):
    """Every record of every logger, formatted as the service writes it with LOG_FORMAT=json."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.addFilter(RequestIdFilter())
        self.setFormatter(JsonLogFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def parsed(self) -> list[dict]:
        return [json.loads(line) for line in self.lines]


@pytest.fixture
def json_lines() -> Iterator[JsonLines]:
    handler = JsonLines()
    root = logging.getLogger()
    quiet = {name: logging.getLogger(name).level for name in ("django.request", "django.db.backends")}
    saved_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    for name in quiet:
        logging.getLogger(name).setLevel(logging.DEBUG)
    yield handler
    root.removeHandler(handler)
    root.setLevel(saved_level)
    for name, level in quiet.items():
        logging.getLogger(name).setLevel(level)


def test_no_json_log_line_of_a_whole_flow_holds_a_code_a_key_a_secret_or_an_sms_text(
    api, raw_key, client, fake_gateway, receiver, receipts, json_lines
):
    secret = api.post(
        "/v1/messaging/webhooks", {"url": receiver.url, "events": ["otp.sent", "otp.approved"]}, format="json"
    ).json()["data"]["secret"]
    response = request_otp(api, DEST)
    session_id = response.json()["data"]["sessionId"]
    assert sms_deliver(message_id=SmsMessage.objects.get().pk) == "sent"
    text = fake_gateway.texts()[0]
    code = code_sent(fake_gateway)
    post_receipt(client, SmsAttempt.objects.get().provider_message_id, "delivered")
    assert verify(api, session_id, wrong_code(code)).status_code == 400
    assert verify(api, session_id, code).status_code == 200
    for delivery in WebhookDelivery.objects.all():
        assert webhook_deliver(delivery_id=delivery.pk) == "delivered"
    assert receiver.calls == 2

    lines = json_lines.parsed()
    assert len(lines) >= 10, json_lines.lines  # DEBUG: the flow's steps, the HTTP calls, the SQL of none
    for raw in json_lines.lines:
        for value in (code, raw_key, raw_key[len("zk_live_") :], secret, secret[len("whsec_") :], text, RECEIPT_TOKEN):
            assert value not in raw, raw
    for line in lines:
        assert {"time", "level", "logger", "message"} <= set(line), line
    wrong = [line for line in lines if line["message"].startswith("POST /v1/messaging/otp/verify answered 400")]
    assert len(wrong) == 1 and wrong[0]["level"] == "WARNING"
    assert wrong[0]["status"] == 400 and "INVALID" in wrong[0]["message"]
    assert (wrong[0]["workspace"], wrong[0]["keyPrefix"]) == ("acme", raw_key[:16])
    assert wrong[0]["requestId"]


# Committed for real (transaction=True): the SMS task is published when the request's transaction commits,
# inside the request, as in production.
@pytest.mark.django_db(transaction=True)
def test_a_log_line_names_its_request_workspace_key_and_route(api, raw_key, fake_gateway, json_lines):
    celery_app.conf.task_always_eager = True  # the send runs inside the request, as without a broker
    try:
        response = request_otp(api, DEST)
    finally:
        celery_app.conf.task_always_eager = False
    request_id = response["X-Request-ID"]

    [sent] = [line for line in json_lines.parsed() if "sent through route" in line["message"]]
    assert sent["requestId"] == request_id
    assert (sent["workspace"], sent["keyPrefix"], sent["route"]) == ("acme", raw_key[:16], "default")


@pytest.mark.django_db(transaction=True)
def test_the_tasks_a_request_publishes_carry_its_context(api, raw_key, receiver, broker_queue, fake_gateway):
    api.post("/v1/messaging/webhooks", {"url": receiver.url, "events": ["otp.approved"]}, format="json")
    response = request_otp(api, DEST)
    session_id = response.json()["data"]["sessionId"]
    sms_deliver(message_id=SmsMessage.objects.get().pk)
    approved = verify(api, session_id, code_sent(fake_gateway))

    queued = [
        json.loads(raw)
        for queue in (SMS_QUEUE, WEBHOOKS_QUEUE)  # each on its own queue
        for raw in reversed(broker_queue.lrange(queue, 0, -1))
    ]
    assert [message["headers"]["task"] for message in queued] == ["otp.tasks.drain_sms", "webhooks.tasks.deliver"]
    for message, answer in zip(queued, (response, approved), strict=True):
        headers = message["headers"]
        assert headers[HEADER_REQUEST_ID] == answer["X-Request-ID"]
        assert (headers[HEADER_WORKSPACE], headers[HEADER_KEY_PREFIX]) == ("acme", raw_key[:16])
