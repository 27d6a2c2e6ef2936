"""SMPP 3.4 through a bind held by its own process (`manage.py smpp_bind ROUTE`).

A bind is a long-lived connection, so the worker does not open one per SMS: `SmppGateway.send` hands the
SMS to the route's bind process through a Redis list and waits for that process's answer (the SMSC's
`submit_sm_resp`). The job carries the text encrypted, never in clear. Receipts (`deliver_sm` with a
delivery receipt) arrive on the bind, not over HTTP; `receipt_from_deliver_sm` reads them from the
`receipted_message_id`/`message_state` TLVs or, failing those, the `id:... stat:...` text.
"""

import json
import re
import secrets
import time
from functools import lru_cache
from typing import Any

import redis
from django.conf import settings

from senders.gateways.base import (
    GatewayResult,
    OutgoingSms,
    PermanentGatewayError,
    Receipt,
    ReceiptRejected,
    ReceiptRequest,
    SmsGateway,
    TransientGatewayError,
)
from zeckta.crypto import fernet_for

JOB_PURPOSE = b"smpp-job-v1"
DEFAULT_TIMEOUT = 10.0  # seconds the worker waits for the bind process's answer
# SMSC answers worth another try: it is throttling us, or its queue is full (SMPP 3.4 section 5.1.3).
TRANSIENT_STATUSES = frozenset({0x58, 0x14})  # ESME_RTHROTTLED, ESME_RMSGQFUL
# message_state TLV values (SMPP 3.4 section 5.3.2.35) and receipt `stat:` words, in the contract's words.
MESSAGE_STATES = {2: "delivered", 3: "expired", 5: "undeliverable", 8: "rejected"}
RECEIPT_WORDS = {
    "DELIVRD": "delivered",
    "EXPIRED": "expired",
    "UNDELIV": "undeliverable",
    "REJECTD": "rejected",
    "DELETED": "undeliverable",
    "ACCEPTD": "sent",
    "ENROUTE": "sent",
}
_RECEIPT_RE = re.compile(r"id:(?P<id>\S+).*?stat:(?P<stat>\w+)(?:.*?err:(?P<err>\w+))?", re.IGNORECASE | re.DOTALL)


def jobs_key(route_key: str) -> str:
    return f"zeckta:smpp:{{{route_key}}}:jobs"


def reply_key(route_key: str, job_id: str) -> str:
    return f"zeckta:smpp:{{{route_key}}}:reply:{job_id}"


@lru_cache(maxsize=4)
def redis_client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_connect_timeout=1.0)


def encrypt_job(job: dict[str, Any]) -> bytes:
    return fernet_for(JOB_PURPOSE).encrypt(json.dumps(job).encode())


def decrypt_job(token: bytes) -> dict[str, Any]:
    return dict(json.loads(fernet_for(JOB_PURPOSE).decrypt(token)))


class SmppGateway(SmsGateway):
    """Submits through the route's bind process; needs Redis (REDIS_URL) and that process running."""

    required_settings = ("host", "port", "system_id", "password")
    optional_settings = ("system_type", "tls", "timeout")

    def send(self, message: OutgoingSms) -> GatewayResult:
        route_key = str(self.config.get("_route_key") or "")
        if not route_key or not settings.REDIS_URL:
            raise PermanentGatewayError("an smpp route needs REDIS_URL and its `manage.py smpp_bind` process")
        timeout = float(self.config.get("timeout") or DEFAULT_TIMEOUT)
        job_id = secrets.token_hex(8)
        job = {
            "job": job_id,
            "to": message.to,
            "src": message.src,
            "text": message.text,
            "reference": message.reference,
            "deadline": time.time() + timeout,
        }
        client = redis_client(settings.REDIS_URL)
        try:
            client.rpush(jobs_key(route_key), encrypt_job(job))
            answer = client.blpop([reply_key(route_key, job_id)], timeout=timeout)
        except redis.RedisError as exc:
            raise TransientGatewayError(f"smpp job queue unavailable: {exc}") from None
        if answer is None:
            # The bind process may take the job later: it drops jobs older than their deadline.
            raise TransientGatewayError(f"no answer from the smpp bind within {timeout}s (is smpp_bind running?)")
        reply = json.loads(answer[1])
        status = int(reply.get("status", -1))
        if reply.get("ok"):
            return GatewayResult(provider_message_id=str(reply.get("message_id") or "")[:200], provider_status="ROK")
        error = f"smpp submit refused: {reply.get('error') or hex(status)}"
        if status in TRANSIENT_STATUSES or reply.get("transient"):
            raise TransientGatewayError(error, error_code=hex(status) if status >= 0 else "")
        raise PermanentGatewayError(error, error_code=hex(status))

    def parse_receipts(self, request: ReceiptRequest) -> list[Receipt]:
        raise ReceiptRejected("smpp receipts arrive on the bind, not over HTTP")


def receipt_from_deliver_sm(pdu: Any) -> Receipt | None:
    """A delivery receipt from a `deliver_sm`, or None when it is something else (a mobile-originated SMS)."""
    message_id = getattr(pdu, "receipted_message_id", None)
    state = getattr(pdu, "message_state", None)
    if isinstance(message_id, bytes):
        message_id = message_id.decode(errors="replace")
    text = getattr(pdu, "short_message", b"") or b""
    parsed = _RECEIPT_RE.search(text.decode("latin-1") if isinstance(text, bytes) else str(text))
    if message_id and state in MESSAGE_STATES:
        status = MESSAGE_STATES[state]
    elif parsed and parsed.group("stat").upper() in RECEIPT_WORDS:
        message_id = message_id or parsed.group("id")
        status = RECEIPT_WORDS[parsed.group("stat").upper()]
    else:
        return None
    return Receipt(
        provider_message_id=str(message_id),
        status=status,
        provider_status=parsed.group("stat").upper() if parsed else str(state),
        error_code=(parsed.group("err") or "") if parsed else "",
    )
