import http.client
import json
import urllib.error
import urllib.request

from django.conf import settings

from senders.gateways.base import (
    GatewayResult,
    OutgoingSms,
    PermanentGatewayError,
    SmsGateway,
    TransientGatewayError,
)

# Bodies longer than this from the gateway are not ours to read (bytes).
MAX_RESPONSE_BYTES = 64 * 1024


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """urllib would follow a 301/302/303 answer to a POST with a body-less GET, and a 2xx to that GET
    would count as accepted although no SMS was submitted: here a redirect stays an HTTPError."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_opener = urllib.request.build_opener(_NoRedirect)


class HttpGateway(SmsGateway):
    """POSTs {"to", "from", "text", "reference"} as JSON to settings.SMS_HTTP_URL.

    2xx: accepted (an `id` in the JSON answer is kept); 4xx: permanent failure; 5xx, timeout or a
    connection error: transient, retried by the caller with the same `reference`.
    """

    def __init__(self) -> None:
        if not settings.SMS_HTTP_URL:
            raise PermanentGatewayError("SMS_HTTP_URL is not set")
        if not settings.SMS_HTTP_URL.startswith(("http://", "https://")):
            raise PermanentGatewayError("SMS_HTTP_URL must be an http:// or https:// URL")
        self.url = settings.SMS_HTTP_URL
        self.token = settings.SMS_HTTP_TOKEN
        self.timeout = settings.SMS_HTTP_TIMEOUT  # seconds

    def send(self, message: OutgoingSms) -> GatewayResult:
        body = json.dumps(
            {"to": message.to, "from": message.src, "text": message.text, "reference": message.reference}
        ).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        # The scheme was checked in __init__: only http(s), never file: or custom handlers.
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")  # noqa: S310
        try:
            with _opener.open(request, timeout=self.timeout) as response:
                payload = response.read(MAX_RESPONSE_BYTES)
        except urllib.error.HTTPError as exc:
            if 300 <= exc.code < 500:
                # 4xx: the gateway refused this message; 3xx: a misconfigured URL. Retrying cannot help.
                raise PermanentGatewayError(f"gateway refused the message: HTTP {exc.code}") from None
            raise TransientGatewayError(f"gateway error: HTTP {exc.code}") from None
        except TimeoutError:
            raise TransientGatewayError(f"gateway timed out after {self.timeout}s") from None
        except (urllib.error.URLError, ConnectionError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise TransientGatewayError(f"gateway unreachable: {reason}") from None
        except http.client.HTTPException as exc:
            # A malformed or cut-short answer (BadStatusLine, IncompleteRead): not an OSError, so without
            # this it would escape and leave the row `processing` until the lease ends. The message may
            # have been taken; the retry carries the same reference so the gateway can drop a duplicate.
            raise TransientGatewayError(f"gateway answered badly: {type(exc).__name__}") from None
        return GatewayResult(provider_message_id=_message_id(payload))


def _message_id(payload: bytes) -> str:
    try:
        data = json.loads(payload or b"{}")
    except ValueError:
        return ""
    value = data.get("id") if isinstance(data, dict) else None
    return str(value)[:200] if value is not None else ""
