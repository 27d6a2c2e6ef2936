"""One careful HTTP client for every provider backend: a time-out for the whole call, no redirects, TLS
verified, a capped response, kept-alive connections, and errors that never quote the request body (it
holds the code).

urllib3 rather than urllib: a worker sends to the same few provider hosts all day, and a pooled
keep-alive connection saves a TCP (and TLS) handshake on every SMS.
"""

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import urllib3
from django.conf import settings
from urllib3.exceptions import HTTPError, NewConnectionError, ProtocolError, TimeoutError

from senders.gateways.base import PermanentGatewayError, SmsGateway, TransientGatewayError
from zeckta.http_deadline import Deadline, deadline_pool_manager

# Bodies longer than this from a provider are not ours to read (bytes).
MAX_RESPONSE_BYTES = 64 * 1024

# One pool per process (a Celery worker child builds its own after the fork, on first use). No retries:
# a POST retried by the client library could send an SMS twice; the outbox retries with the same reference.
# No redirects: urllib would follow a 301/302/303 to a POST with a body-less GET, and a 2xx to that GET
# would count as accepted although no SMS was submitted; here a redirect is the answer itself.
# Its connections report to the call's Deadline (zeckta.http_deadline): `timeout` bounds the whole call.
# maxsize: the kept-alive connections per provider host. A worker process has up to SMS_SEND_CONCURRENCY calls
# in flight (otp.delivery.sms_drain); a smaller pool would open, and then drop, a connection per call beyond it.
_pool = deadline_pool_manager(num_pools=32, maxsize=settings.SMS_SEND_CONCURRENCY, retries=False, block=False)


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    body: bytes


def post(url: str, *, body: bytes, headers: dict[str, str], timeout: float) -> HttpAnswer:
    """POSTs and returns whatever status the provider answered; TransientGatewayError when none came.

    `timeout` (seconds) bounds the whole call, connection, request and answer together: a provider (or
    something in between) that trickles its answer cannot hold the worker past it."""
    if not url.startswith(("http://", "https://")):
        raise ValueError("provider URLs are http:// or https:// only")
    with Deadline(timeout) as deadline:
        try:
            content, status = _call(url, body=body, headers=headers, timeout=timeout, deadline=deadline)
        except (HTTPError, OSError) as exc:  # every error of urllib3 derives from HTTPError
            raise _unanswered(exc, timeout=timeout, cut=deadline.expired) from None
    return HttpAnswer(status, content[:MAX_RESPONSE_BYTES])


def _call(url: str, *, body: bytes, headers: dict[str, str], timeout: float, deadline: Deadline) -> tuple[bytes, int]:
    response = _pool.request(
        "POST",
        url,
        body=body,
        headers=headers,
        timeout=urllib3.Timeout(total=timeout),
        redirect=False,
        retries=False,
        preload_content=False,
    )
    content = b""
    try:
        content = response.read(MAX_RESPONSE_BYTES + 1)
    finally:
        cut_short = len(content) > MAX_RESPONSE_BYTES or not content and response.length_remaining
        if cut_short or deadline.expired:
            response.close()  # not read to its end (or shut down), so it cannot serve another request
        else:
            response.release_conn()
    return content, response.status


def _unanswered(exc: HTTPError | OSError, *, timeout: float, cut: bool) -> TransientGatewayError:
    """`cut`: the deadline shut the call's socket down; whatever urllib3 made of it, it is the time-out."""
    if cut or (isinstance(exc, TimeoutError) and not isinstance(exc, NewConnectionError)):
        # The answer may have been on its way: the message may have been taken, and the retry carries the
        # same reference so that the provider can drop a duplicate.
        return TransientGatewayError(f"provider timed out after {timeout}s")
    if isinstance(exc, ProtocolError):
        # A connection cut or an answer cut short: as above, the message may have been taken.
        return TransientGatewayError(f"provider answered badly: {_reason(exc)}")
    return TransientGatewayError(f"provider unreachable: {_reason(exc)}")


def _reason(exc: Exception) -> str:
    """The innermost cause's class and words, never the request (urllib3 messages can quote the URL)."""
    cause = exc
    while cause.__context__ is not None and cause.__context__ is not cause:
        cause = cause.__context__  # type: ignore[assignment]
    return type(cause).__name__


def json_object(body: bytes) -> dict[str, Any]:
    """A provider's JSON answer as a dict; {} for anything else (HTML error pages, empty bodies)."""
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


class ProviderGateway(SmsGateway):
    """A provider reached over HTTPS: its required settings checked, `base_url` and `timeout` read once."""

    provider = ""
    required_settings: tuple[str, ...] = ()
    default_base_url = ""
    default_timeout = 10.0  # seconds

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        super().__init__(config)
        missing = [name for name in self.required_settings if not self.config.get(name)]
        if missing:
            raise PermanentGatewayError(f"the {self.provider} route needs {' and '.join(missing)}")
        self.base_url = str(self.config.get("base_url") or self.default_base_url).rstrip("/")
        self.timeout = float(self.config.get("timeout") or self.default_timeout)

    def setting(self, name: str) -> str:
        return str(self.config.get(name) or "")
