"""The service's default OTP texts, one per purpose, kept in templates/otp/<PURPOSE>.txt."""

from functools import cache

from django.conf import settings


@cache
def default_template(purpose: str) -> str:
    path = settings.BASE_DIR / "templates" / "otp" / f"{purpose}.txt"
    return path.read_text(encoding="utf-8").strip()
