"""One careful HTTP client for every provider backend: time-outs, no redirects, TLS verified (urllib's
default context), a capped response, and errors that never quote the request body (it holds the code)."""

import http.client
import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from senders.gateways.base import PermanentGatewayError, SmsGateway, TransientGatewayError

# Bodies longer than this from a provider are not ours to read (bytes).
MAX_RESPONSE_BYTES = 64 * 1024


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """urllib would follow a 301/302/303 answer to a POST with a body-less GET, and a 2xx to that GET
    would count as accepted although no SMS was submitted: here a redirect stays an HTTPError."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_opener = urllib.request.build_opener(_NoRedirect)


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    body: bytes


def post(url: str, *, body: bytes, headers: dict[str, str], timeout: float) -> HttpAnswer:
    """POSTs and returns whatever status the provider answered; TransientGatewayError when none came."""
    if not url.startswith(("http://", "https://")):
        raise ValueError("provider URLs are http:// or https:// only")
    # The scheme was checked above: only http(s), never file: or custom handlers.
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
    try:
        with _opener.open(request, timeout=timeout) as response:
            return HttpAnswer(response.status, response.read(MAX_RESPONSE_BYTES))
    except urllib.error.HTTPError as exc:
        return HttpAnswer(exc.code, exc.read(MAX_RESPONSE_BYTES) if exc.fp is not None else b"")
    except TimeoutError:
        raise TransientGatewayError(f"provider timed out after {timeout}s") from None
    except (urllib.error.URLError, ConnectionError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TransientGatewayError(f"provider unreachable: {reason}") from None
    except http.client.HTTPException as exc:
        # A malformed or cut-short answer (BadStatusLine, IncompleteRead): the message may have been taken;
        # the retry carries the same reference so the provider can drop a duplicate.
        raise TransientGatewayError(f"provider answered badly: {type(exc).__name__}") from None


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
