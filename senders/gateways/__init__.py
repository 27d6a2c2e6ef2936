"""SMS gateway backends. A route names one (`senders.models.Route.backend`); the default route is the one
settings.SMS_BACKEND names, the way Django picks EMAIL_BACKEND.

`console`, `file`, `locmem`, `http`, `twilio`, `vonage`, `infobip` and `africastalking` name the built-in
backends; any other SMS_BACKEND value is
a dotted path to a class with the same interface.
"""

from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.utils.module_loading import import_string

from senders.gateways.base import (
    FINAL_RECEIPT_STATUSES,
    RECEIPT_SENT,
    BackendSpec,
    GatewayError,
    GatewayResult,
    OutgoingSms,
    PermanentGatewayError,
    Receipt,
    ReceiptRejected,
    ReceiptRequest,
    SmsGateway,
    TransientGatewayError,
)

# What each backend is and which route settings it needs (API.md section 11). Every HTTP backend also
# takes `base_url`, so a proxy or a test double can stand in for the provider.
BACKENDS: dict[str, BackendSpec] = {
    "console": BackendSpec("senders.gateways.console.ConsoleGateway"),
    "file": BackendSpec("senders.gateways.file.FileGateway", optional=frozenset({"path"})),
    "locmem": BackendSpec("senders.gateways.locmem.LocmemGateway"),
    "http": BackendSpec("senders.gateways.http.HttpGateway", required=frozenset({"url"}),
                        optional=frozenset({"token", "receipt_token", "timeout"})),
    "twilio": BackendSpec("senders.gateways.twilio.TwilioGateway",
                          required=frozenset({"account_sid", "auth_token"}),
                          optional=frozenset({"messaging_service_sid", "base_url", "timeout"})),
    "vonage": BackendSpec("senders.gateways.vonage.VonageGateway",
                          required=frozenset({"api_key", "api_secret", "signature_secret"}),
                          optional=frozenset({"signature_method", "base_url", "timeout"})),
    "infobip": BackendSpec("senders.gateways.infobip.InfobipGateway", required=frozenset({"api_key", "receipt_token"}),
                           optional=frozenset({"base_url", "timeout"})),
    "smpp": BackendSpec("senders.gateways.smpp.SmppGateway",
                        required=frozenset({"host", "port", "system_id", "password"}),
                        optional=frozenset({"system_type", "tls", "timeout"})),
    "africastalking": BackendSpec("senders.gateways.africastalking.AfricasTalkingGateway",
                                  required=frozenset({"username", "api_key", "receipt_token"}),
                                  optional=frozenset({"base_url", "timeout"})),
}


def default_route_config() -> dict[str, Any]:
    """The SMS_* settings, as the route settings of the default route."""
    return {
        "url": settings.SMS_HTTP_URL,
        "token": settings.SMS_HTTP_TOKEN,
        "timeout": settings.SMS_HTTP_TIMEOUT,
        "receipt_token": settings.SMS_HTTP_RECEIPT_TOKEN,
        "path": settings.SMS_FILE_PATH,
    }


def get_gateway(backend: str | None = None, config: Mapping[str, Any] | None = None) -> SmsGateway:
    """The gateway of a backend with its route settings; without arguments, the default route's."""
    if backend is None:
        backend, config = settings.SMS_BACKEND, default_route_config()
    spec = BACKENDS.get(backend)
    gateway_class = import_string(spec.path if spec is not None else backend)
    return gateway_class(dict(config or {}))


__all__ = [
    "BACKENDS",
    "FINAL_RECEIPT_STATUSES",
    "RECEIPT_SENT",
    "GatewayError",
    "GatewayResult",
    "OutgoingSms",
    "PermanentGatewayError",
    "Receipt",
    "ReceiptRejected",
    "ReceiptRequest",
    "SmsGateway",
    "TransientGatewayError",
    "default_route_config",
    "get_gateway",
]
