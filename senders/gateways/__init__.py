"""SMS gateway backends, chosen by settings.SMS_BACKEND the way Django picks EMAIL_BACKEND.

`console`, `file`, `locmem` and `http` name the built-in backends; any other value is a dotted path
to a class with the same `send()` method.
"""

from django.conf import settings
from django.utils.module_loading import import_string

from senders.gateways.base import (
    GatewayError,
    GatewayResult,
    OutgoingSms,
    PermanentGatewayError,
    SmsGateway,
    TransientGatewayError,
)

BUILTIN_BACKENDS = {
    "console": "senders.gateways.console.ConsoleGateway",
    "file": "senders.gateways.file.FileGateway",
    "locmem": "senders.gateways.locmem.LocmemGateway",
    "http": "senders.gateways.http.HttpGateway",
}


def get_gateway() -> SmsGateway:
    path = BUILTIN_BACKENDS.get(settings.SMS_BACKEND, settings.SMS_BACKEND)
    return import_string(path)()


__all__ = [
    "GatewayError",
    "GatewayResult",
    "OutgoingSms",
    "PermanentGatewayError",
    "SmsGateway",
    "TransientGatewayError",
    "get_gateway",
]
