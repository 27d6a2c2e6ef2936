"""The channels an OTP can go out by (API.md section 15). Here, at the bottom of the layers, because the
workspace's fallback order, the routes' backends and the sends all name them."""

from django.db import models


class Channel(models.TextChoices):
    SMS = "sms", "SMS"
    WHATSAPP = "whatsapp", "WhatsApp"
    VOICE = "voice", "Voice call"


# A workspace's fallback order when it names none: SMS only, as before channels existed.
DEFAULT_CHANNELS: tuple[str, ...] = (Channel.SMS,)
# Bounds of a workspace's fallbackAfterSeconds (API.md section 6, `--fallback-after`).
FALLBACK_AFTER_SECONDS_MIN, FALLBACK_AFTER_SECONDS_MAX = 5, 600
FALLBACK_AFTER_SECONDS_DEFAULT = 30
# The locale a workspace or a request falls back to when nothing else has texts (API.md section 15).
DEFAULT_LOCALE = "en"
LOCALE_MAX_LENGTH = 35  # BCP 47 tags in practice stay far below; RFC 5646 section 4.4.1 advises 35


def default_channels() -> list[str]:
    return list(DEFAULT_CHANNELS)
