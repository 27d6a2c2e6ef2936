"""SMS gateway backends. A route names one (`senders.models.Route.backend`); the default route is the one
settings.SMS_BACKEND names, the way Django picks EMAIL_BACKEND.

`console`, `file`, `locmem`, `http`, `twilio`, `vonage`, `infobip` and `africastalking` name the built-in
SMS backends, `whatsapp`, `twilio_voice` and `vonage_voice` those of the other channels (routes only:
SMS_BACKEND is the SMS channel's default route); any other SMS_BACKEND value is
a dotted path to a class with the same interface.
"""

from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.utils.module_loading import import_string

from senders.gateways.base import (
    FINAL_RECEIPT_STATUSES,
    RECEIPT_SENT,
    GatewayError,
    GatewayResult,
    OutgoingSms,
    PermanentGatewayError,
    Receipt,
    ReceiptInvalid,
    ReceiptRejected,
    ReceiptRequest,
    SmsGateway,
    TransientGatewayError,
)

# The built-in backends by name. Each class says which route settings it takes (`required_settings`,
# `optional_settings`): one list, read by route validation and by the gateway alike.
BACKENDS: dict[str, str] = {
    "console": "senders.gateways.console.ConsoleGateway",
    "file": "senders.gateways.file.FileGateway",
    "locmem": "senders.gateways.locmem.LocmemGateway",
    # Development only, as locmem: the WhatsApp and voice channels without a provider (tests).
    "locmem_whatsapp": "senders.gateways.locmem.LocmemWhatsAppGateway",
    "locmem_voice": "senders.gateways.locmem.LocmemVoiceGateway",
    "http": "senders.gateways.http.HttpGateway",
    "twilio": "senders.gateways.twilio.TwilioGateway",
    "vonage": "senders.gateways.vonage.VonageGateway",
    "infobip": "senders.gateways.infobip.InfobipGateway",
    "smpp": "senders.gateways.smpp.SmppGateway",
    "africastalking": "senders.gateways.africastalking.AfricasTalkingGateway",
    # API.md section 15: the WhatsApp and voice channels' backends (each class names its channel).
    "whatsapp": "senders.gateways.whatsapp.WhatsAppGateway",
    "twilio_voice": "senders.gateways.twilio_voice.TwilioVoiceGateway",
    "vonage_voice": "senders.gateways.vonage_voice.VonageVoiceGateway",
}


def backend_class(backend: str) -> type[SmsGateway]:
    """The gateway class of a built-in backend name, or of a dotted path (SMS_BACKEND may name one)."""
    return import_string(BACKENDS.get(backend, backend))


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
    return backend_class(backend)(dict(config or {}))


__all__ = [
    "BACKENDS",
    "FINAL_RECEIPT_STATUSES",
    "RECEIPT_SENT",
    "GatewayError",
    "GatewayResult",
    "OutgoingSms",
    "PermanentGatewayError",
    "Receipt",
    "ReceiptInvalid",
    "ReceiptRejected",
    "ReceiptRequest",
    "SmsGateway",
    "TransientGatewayError",
    "backend_class",
    "default_route_config",
    "get_gateway",
]
