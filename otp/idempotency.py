"""Idempotent OTP requests: the same Idempotency-Key and body within 24 hours replays the first answer."""

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from fraud.errors import DestinationBlocked
from fraud.services import fraud_trips_record
from otp.errors import IdempotencyKeyReused
from otp.models import IdempotencyRecord
from workspaces.models import Workspace

IDEMPOTENCY_TTL = timedelta(hours=24)
KEY_MAX_LENGTH = 255
# Printable ASCII, no leading or trailing space (HTTP would strip it anyway).
KEY_RE = re.compile(r"[!-~]([ -~]{0,253}[!-~])?")
KEY_SCHEMA = {"type": "string", "minLength": 1, "maxLength": KEY_MAX_LENGTH, "pattern": f"^{KEY_RE.pattern}$"}


@dataclass(frozen=True)
class IdempotentAnswer:
    status: int
    body: dict
    replayed: bool


def key_problem(key: str) -> str | None:
    if not KEY_RE.fullmatch(key):
        return f"Use 1 to {KEY_MAX_LENGTH} printable ASCII characters."
    return None


def fingerprint(payload: dict) -> str:
    """The body's identity: a field sent as null is the same as the field left out (API.md section 1)."""
    present = {name: value for name, value in payload.items() if value is not None}
    return hashlib.sha256(json.dumps(present, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def run_idempotent(
    *, workspace: Workspace, key: str, payload: dict, perform: Callable[[], tuple[int, dict]], test: bool = False
) -> IdempotentAnswer:
    """Runs `perform` once per (workspace, mode, key); later calls with the same payload get its answer.
    The workspace's test keys and live keys have a key space each: neither ever replays the other's answer.

    The record is inserted first, in the same transaction as the work: a concurrent duplicate waits on
    the unique index until this one commits, then replays it. If `perform` raises, everything rolls
    back and the key stays free, so a client can retry after fixing the cause (balance, limits).

    A request the fraud guard refused because it tripped a velocity rule rolls back its block's record with
    it: the block stands in Redis, so it is recorded again once the transaction is over.
    """
    try:
        return _run_idempotent(workspace=workspace, key=key, payload=payload, perform=perform, test=test)
    except DestinationBlocked as refused:
        fraud_trips_record(workspace=workspace, trips=refused.trips, now=timezone.now())
        raise


@transaction.atomic
def _run_idempotent(
    *, workspace: Workspace, key: str, payload: dict, perform: Callable[[], tuple[int, dict]], test: bool
) -> IdempotentAnswer:
    now = timezone.now()
    digest = fingerprint(payload)
    # Expired keys are free again.
    identity = {"workspace": workspace, "is_test": test, "key": key}
    IdempotencyRecord.objects.filter(**identity, created_at__lte=now - IDEMPOTENCY_TTL).delete()
    record, created = IdempotencyRecord.objects.get_or_create(
        **identity,
        defaults={"fingerprint": digest, "response_status": 0, "response_body": {}, "created_at": now},
    )
    if not created:
        if record.fingerprint != digest:
            raise IdempotencyKeyReused()
        return IdempotentAnswer(record.response_status, record.response_body, replayed=True)
    status, body = perform()
    IdempotencyRecord.objects.filter(pk=record.pk).update(response_status=status, response_body=body)
    return IdempotentAnswer(status, body, replayed=False)


def idempotency_records_purge() -> int:
    deleted, _ = IdempotencyRecord.objects.filter(created_at__lte=timezone.now() - IDEMPOTENCY_TTL).delete()
    return deleted
