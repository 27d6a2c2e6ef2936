"""The service's Prometheus metrics, all defined here, and what a scrape of /metrics answers.

Code paths count with one call (`OTP_REQUESTS.labels(outcome="new").inc()`): in-process, no SQL, no Redis.
In a gunicorn or Celery process group (zeckta.multiprocess) the values live in memory-mapped files that
every process of the machine can read, and a scrape adds them up; elsewhere (runserver, tests, commands)
they stay in this process's registry.

Label values are few and fixed (the contract's codes and statuses, route names, ISO country codes, URL
pattern names): never a phone number, a session id, a key or anything a client chooses.

Every label value known in advance is exported at 0 from the first scrape, as Prometheus' instrumentation
guidance asks (a series that appears with its first event breaks `rate()` and alerts on a fresh deployment):
each vocabulary is declared once, with `known_label_values`, from the enum that defines it (below, or an
app's own in its `ready()`), and a scrape writes the missing series before it reads. Some values cannot be
known in advance: the countries of zeckta_sms_units_total, and the routes operators configure (only the
`SMS_BACKEND` route, which always exists, is declared); those series appear with their first count.
"""

import itertools
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from django.utils import timezone
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
    values,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from zeckta import multiprocess

logger = logging.getLogger(__name__)

# `*_created` series double what a scrape returns and are not kept in multiprocess mode anyway.
disable_created_metrics()


# --- The vocabularies of the labels that belong to no app's model --------------------------------------


class RequestOutcome(StrEnum):
    """zeckta_otp_requests_total's outcomes besides a refusal, whose outcome is its error code."""

    NEW = "new"
    REUSED = "reused"
    RESENT = "resent"
    REPLAYED = "replayed"  # the stored answer of an Idempotency-Key seen before


class SmsSendOutcome(StrEnum):
    """zeckta_sms_total's statuses for a call to a provider; its receipts add their final statuses."""

    SENT = "sent"  # a provider accepted it
    RETRIED = "retried"  # a transient error: tried again
    FAILED = "failed"  # refused, or given up on that route


class RateLimitReason(StrEnum):
    """zeckta_rate_limited_total's reasons: the limit that refused a request."""

    KEY_RATE = "key_rate"  # an API key's requests per second
    AUTH_FAILURES = "auth_failures"  # an address past its failed authentications
    DESTINATION = "destination"  # new OTP SMS to one destination per window
    WRONG_CODES = "wrong_codes"  # one destination's wrong-code budget
    COUNTRY = "country"  # a workspace's hourly ceiling per country
    DAILY_CAP = "daily_cap"  # a workspace's daily SMS cap
    RESEND_COOLDOWN = "resend_cooldown"  # a resend before resendAvailableInSeconds


class WebhookOutcome(StrEnum):
    """zeckta_webhook_deliveries_total's outcomes of one delivery attempt."""

    DELIVERED = "delivered"  # a 2xx answer
    RETRYING = "retrying"  # failed: tried again later
    GIVEN_UP = "given_up"  # failed past the retry window: the endpoint is marked failing


def _listed(values: Iterable[str]) -> str:
    return ", ".join(values)


OTP_REQUESTS = Counter(
    "zeckta_otp_requests_total",
    f"OTP requests and resends by outcome: {_listed(RequestOutcome)}, or the error code of a refusal "
    "(DESTINATION_RATE_LIMITED, INSUFFICIENT_BALANCE, VALIDATION_ERROR...).",
    ["outcome"],
)
OTP_VERIFICATIONS = Counter(
    "zeckta_otp_verifications_total",
    "Verifications by the status answered: APPROVED, INVALID, EXPIRED, MAX_ATTEMPTS_REACHED, ALREADY_USED, "
    "CANCELED, NOT_FOUND.",
    ["status"],
)
SMS = Counter(
    "zeckta_sms_total",
    f"SMS events by route and status: the calls to a provider ({_listed(SmsSendOutcome)}), and the final "
    "statuses of the receipts (delivered, undeliverable, rejected, expired).",
    ["route", "status"],
)
SMS_UNITS = Counter(
    "zeckta_sms_units_total",
    "Billing units (segments) of the SMS providers accepted, by destination country (ISO 3166 alpha-2).",
    ["country"],
)
RATE_LIMITED = Counter(
    "zeckta_rate_limited_total",
    f"Requests refused by a limit, by reason: {_listed(RateLimitReason)}.",
    ["reason"],
)
WEBHOOK_DELIVERIES = Counter(
    "zeckta_webhook_deliveries_total",
    f"Webhook delivery attempts by outcome: {_listed(WebhookOutcome)}.",
    ["outcome"],
)
SMS_SEND_SECONDS = Histogram(
    "zeckta_sms_send_seconds",
    "Time of one call to a provider to send an SMS, whatever its outcome, by route.",
    ["route"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
HTTP_REQUEST_SECONDS = Histogram(
    "zeckta_http_request_seconds",
    "Time to answer an HTTP request, by view (its URL pattern's name; `unmatched` when none was reached).",
    ["view"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
FRAUD_DECISIONS = Counter(
    "zeckta_fraud_decisions_total",
    "New fraud-guard blocks by rule (range_velocity, range_conversion, country_velocity, country_conversion) "
    "and mode (enforce: it refuses; shadow: recorded only).",
    ["rule", "mode"],
)
FRAUD_REFUSED = Counter(
    "zeckta_fraud_refused_total",
    "OTP requests and resends refused with DESTINATION_BLOCKED (the guard in enforce mode).",
)
HTTP_RESPONSES = Counter(
    "zeckta_http_responses_total",
    "HTTP answers by view and status code.",
    ["view", "status"],
)


# --- Label values known in advance ---------------------------------------------------------------------

# (metric, label name -> its known values): every combination is a series from the first scrape.
_known: list[tuple[Counter, dict[str, tuple[str, ...]]]] = []


def known_label_values(metric: Counter, **values: Iterable[str]) -> None:
    """Declares the values each label of `metric` is known to take, from the enum or constant that defines
    them: every combination is exported at 0 before anything is counted. Other values still count."""
    _known.append((metric, {label: tuple(str(value) for value in given) for label, given in values.items()}))


def _known_series_export() -> None:
    """Makes every declared series exist (at 0 until counted). Run by the process answering a scrape, before
    it reads: in a process group its zeros are written to its own file, where the scrape reads them whatever
    the layout (a Celery worker sets Django up before its group's files are chosen, so a worker could not
    write them at start-up), and since counters add up over processes, zeros never double a count. Cheap
    and idempotent: an existing series is only looked up."""
    for metric, vocabulary in _known:
        labels = list(vocabulary)
        for combination in itertools.product(*vocabulary.values()):
            metric.labels(**dict(zip(labels, combination, strict=True)))


known_label_values(RATE_LIMITED, reason=RateLimitReason)
known_label_values(WEBHOOK_DELIVERIES, outcome=WebhookOutcome)


# --- Gauges read at scrape time ----------------------------------------------------------------


@dataclass(frozen=True)
class OutboxState:
    pending: int  # SMS not yet handed to a provider: queued (due or in a retry's backoff) or being sent
    oldest_created_at: datetime | None  # the oldest of them, None when there is none


# The outbox belongs to the otp app, which registers how to read it (OtpConfig.ready): zeckta imports no app.
_outbox_reader: Callable[[], OutboxState] | None = None


def outbox_reader_register(reader: Callable[[], OutboxState]) -> None:
    global _outbox_reader
    _outbox_reader = reader


class _OutboxCollector(Collector):
    """zeckta_outbox_pending and zeckta_outbox_oldest_seconds, from one indexed query per scrape. Left out
    of the answer (and logged) when the database cannot be read: the counters still get through."""

    def collect(self) -> Iterator[Metric]:
        if _outbox_reader is None:
            return
        try:
            state = _outbox_reader()
        except Exception as exc:  # the database is down: the scrape still answers
            logger.warning("metrics: the outbox could not be read: %s", exc)
            return
        pending = GaugeMetricFamily("zeckta_outbox_pending", "SMS in the outbox not yet handed to a provider.")
        pending.add_metric([], state.pending)
        age = 0.0
        if state.oldest_created_at is not None:
            age = max((timezone.now() - state.oldest_created_at).total_seconds(), 0.0)
        oldest = GaugeMetricFamily(
            "zeckta_outbox_oldest_seconds", "Age in seconds of the oldest SMS not yet handed to a provider (0: none)."
        )
        oldest.add_metric([], age)
        yield pending
        yield oldest


class _ProcessGroupsCollector(Collector):
    """The counters and histograms of every process group of the machine (zeckta.multiprocess), added up."""

    def collect(self) -> Iterable[Metric]:
        return MultiProcessCollector.merge([str(path) for path in multiprocess.group_files()], accumulate=True)


class _RegistryCollector(Collector):
    """This process's own registry, outside a process group: its metrics and the process collectors."""

    def collect(self) -> Iterable[Metric]:
        return REGISTRY.collect()


def is_multiprocess() -> bool:
    """Whether this process writes its metrics to its group's files (decided when prometheus_client loaded)."""
    return bool(getattr(values.ValueClass, "_multiprocess", False))


def scrape() -> tuple[bytes, str]:
    """The /metrics answer: the body in Prometheus text format, and its content type."""
    _known_series_export()
    registry = CollectorRegistry()
    registry.register(_ProcessGroupsCollector() if is_multiprocess() else _RegistryCollector())
    registry.register(_OutboxCollector())
    return generate_latest(registry), CONTENT_TYPE_LATEST
