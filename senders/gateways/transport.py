"""One careful HTTP client for every provider backend: time-outs, no redirects, TLS verified, a capped
response, kept-alive connections, and errors that never quote the request body (it holds the code).

urllib3 rather than urllib: a worker sends to the same few provider hosts all day, and a pooled
keep-alive connection saves a TCP (and TLS) handshake on every SMS.
"""

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import urllib3
from urllib3.exceptions import HTTPError, NewConnectionError, ProtocolError, TimeoutError

from senders.gateways.base import PermanentGatewayError, SmsGateway, TransientGatewayError

# Bodies longer than this from a provider are not ours to read (bytes).
MAX_RESPONSE_BYTES = 64 * 1024

# One pool per process (a Celery worker child builds its own after the fork, on first use). No retries:
# a POST retried by the client library could send an SMS twice; the outbox retries with the same reference.
# No redirects: urllib would follow a 301/302/303 to a POST with a body-less GET, and a 2xx to that GET
# would count as accepted although no SMS was submitted; here a redirect is the answer itself.
_pool = urllib3.PoolManager(num_pools=32, maxsize=4, retries=False, block=False)


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    body: bytes


def post(url: str, *, body: bytes, headers: dict[str, str], timeout: float) -> HttpAnswer:
    """POSTs and returns whatever status the provider answered; TransientGatewayError when none came."""
    if not url.startswith(("http://", "https://")):
        raise ValueError("provider URLs are http:// or https:// only")
    try:
        response = _pool.request("POST", url, body=body, headers=headers, timeout=urllib3.Timeout(total=timeout),
                                 redirect=False, retries=False, preload_content=False)
        content = b""
        try:
            content = response.read(MAX_RESPONSE_BYTES + 1)
        finally:
            if len(content) > MAX_RESPONSE_BYTES or not content and response.length_remaining:
                response.close()  # not read to its end, so the connection cannot serve another request
            else:
                response.release_conn()
    except NewConnectionError as exc:  # before TimeoutError: urllib3 derives it from ConnectTimeoutError
        raise TransientGatewayError(f"provider unreachable: {_reason(exc)}") from None
    except TimeoutError:
        raise TransientGatewayError(f"provider timed out after {timeout}s") from None
    except ProtocolError as exc:
        # A connection cut or an answer cut short: the message may have been taken; the retry carries the
        # same reference so the provider can drop a duplicate.
        raise TransientGatewayError(f"provider answered badly: {_reason(exc)}") from None
    except (HTTPError, OSError) as exc:
        raise TransientGatewayError(f"provider unreachable: {_reason(exc)}") from None
    return HttpAnswer(response.status, content[:MAX_RESPONSE_BYTES])


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
