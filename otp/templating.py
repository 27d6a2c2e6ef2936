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


def voice_text(*, code: str, locale: str) -> str:
    """What a voice call says once (the backend says it twice, API.md section 15): the code digit by digit,
    each digit its own word so that a text-to-speech engine does not read "482913" as a number. English
    only until the texts per locale exist; `locale` is the session's resolved tag."""
    digits = ", ".join(code)
    return f"Your verification code is: {digits}."
