"""The service's default OTP texts, one per purpose, kept in templates/otp/<PURPOSE>.txt, and the one for
a TRANSACTION request with a transaction in TRANSACTION_DETAILS.txt."""

from functools import cache

from django.conf import settings


@cache
def default_template(purpose: str) -> str:
    return _read(purpose)


@cache
def transaction_template() -> str:
    """The default text of a TRANSACTION request that carries a transaction: it names amount and payee."""
    return _read("TRANSACTION_DETAILS")


def _read(name: str) -> str:
    path = settings.BASE_DIR / "templates" / "otp" / f"{name}.txt"
    return path.read_text(encoding="utf-8").strip()
