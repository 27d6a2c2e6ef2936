"""The text of an OTP SMS: template validation, literal rendering and GSM 03.38 / UCS-2 segment counting.

Here, at the bottom of the layers, because both the workspace policy (its default template, checked in
the admin) and the OTP request (a client's template, the rendered SMS and its cost) need it.

A template is never handed to a template engine or to str.format: placeholders are replaced as
plain text, so a template can neither read attributes nor evaluate anything.
"""

import re
import unicodedata
from dataclasses import dataclass

CODE_PLACEHOLDER = "<OTP>"
MINUTES_PLACEHOLDER = "<MINUTES>"
KNOWN_PLACEHOLDERS = frozenset({CODE_PLACEHOLDER, MINUTES_PLACEHOLDER})
# A TRANSACTION request's amount ("GHS 125.50") and payee: only in a request that carries a transaction.
AMOUNT_PLACEHOLDER = "<AMOUNT>"
PAYEE_PLACEHOLDER = "<PAYEE>"
TRANSACTION_PLACEHOLDERS = frozenset({AMOUNT_PLACEHOLDER, PAYEE_PLACEHOLDER})
TEMPLATE_MAX_CHARS = 160
_PLACEHOLDER_RE = re.compile(r"<[A-Z][A-Z0-9_]*>")
# Control characters other than a line feed have no place in an SMS and can hide text.
_CONTROL_RE = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")


def template_errors(template: str, *, transaction: bool = False) -> list[str]:
    """Every problem with a client or workspace template; empty when it is usable.

    `transaction`: the template is for a request that carries a transaction, so <AMOUNT> and <PAYEE> are
    allowed too (a workspace's default template serves every purpose and may not use them).
    """
    known = KNOWN_PLACEHOLDERS | TRANSACTION_PLACEHOLDERS if transaction else KNOWN_PLACEHOLDERS
    problems = []
    if len(template) > TEMPLATE_MAX_CHARS:
        problems.append(f"Ensure this field has no more than {TEMPLATE_MAX_CHARS} characters.")
    count = template.count(CODE_PLACEHOLDER)
    if count != 1:
        problems.append(f"The template must contain the placeholder {CODE_PLACEHOLDER} exactly once (found {count}).")
    unknown = sorted({p for p in _PLACEHOLDER_RE.findall(template) if p not in known})
    if unknown:
        problems.append(
            f"Unknown placeholder(s): {', '.join(unknown)}. Only <OTP> and <MINUTES> are allowed, "
            "and <AMOUNT> and <PAYEE> in a request with a transaction."
        )
    if _CONTROL_RE.search(template):
        problems.append("The template must not contain control characters.")
    # Bidi overrides and zero-width characters can show a code reversed or hide text on the phone.
    if any(unicodedata.category(character) == "Cf" for character in template):
        problems.append("The template must not contain Unicode format characters (bidi overrides, zero-width).")
    return problems


def render(
    template: str, *, code: str, validity_seconds: int, amount: str | None = None, payee: str | None = None
) -> str:
    """The template with each placeholder replaced in one pass: a value put in (a payee written as
    "<OTP>", say) is never read again as a placeholder."""
    values = {CODE_PLACEHOLDER: code, MINUTES_PLACEHOLDER: str(validity_seconds // 60)}
    if amount is not None:
        values[AMOUNT_PLACEHOLDER] = amount
    if payee is not None:
        values[PAYEE_PLACEHOLDER] = payee
    return _PLACEHOLDER_RE.sub(lambda found: values.get(found.group(0), found.group(0)), template)


# --- Segments (GSM 03.38 / UCS-2) ---------------------------------------------------------------

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# The extension table: each costs two septets (an escape, then the character).
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

GSM7_SINGLE, GSM7_CONCAT = 160, 153  # septets in one SMS / in each part of a longer one
UCS2_SINGLE, UCS2_CONCAT = 70, 67  # UTF-16 code units likewise


@dataclass(frozen=True)
class SegmentInfo:
    encoding: str  # "GSM-7" or "UCS-2"
    segments: int


# Android's SMS Retriever finds the app by this 11-character hash anywhere in the SMS (on its own line by
# convention); the WebOTP API reads the code from the last line, "@<host> #<code>", and only for that origin.
APP_HASH_RE = re.compile(r"[A-Za-z0-9+/]{11}")
_HOST_LABEL = r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)"
WEB_OTP_DOMAIN_RE = re.compile(rf"{_HOST_LABEL}(\.{_HOST_LABEL})*")
WEB_OTP_DOMAIN_MAX_CHARS = 253


def with_autofill(text: str, *, code: str, app_hash: str | None = None, web_otp_domain: str | None = None) -> str:
    """The SMS with its autofill lines after the text: the app hash, then the WebOTP line, which must be last."""
    lines = [text]
    if app_hash:
        lines.append(app_hash)
    if web_otp_domain:
        lines.append(f"@{web_otp_domain} #{code}")
    return "\n".join(lines)


def _pack(costs: list[int], single: int, concat: int) -> int:
    """Parts needed when a character (of `cost` units) is never split across two parts."""
    total = sum(costs)
    if total <= single:
        return 1
    parts, used = 1, 0
    for cost in costs:
        if used + cost > concat:
            parts, used = parts + 1, 0
        used += cost
    return parts


_GSM7 = GSM7_BASIC | GSM7_EXTENSION


def count_segments(text: str) -> SegmentInfo:
    # A text that fits one SMS, as nearly every OTP does, is counted whole, without a cost per character
    # (_pack answers 1 for it too): this runs in every request.
    if _GSM7.issuperset(text):
        if len(text) + sum(map(text.count, GSM7_EXTENSION)) <= GSM7_SINGLE:
            return SegmentInfo("GSM-7", 1)
        costs = [2 if ch in GSM7_EXTENSION else 1 for ch in text]
        return SegmentInfo("GSM-7", _pack(costs, GSM7_SINGLE, GSM7_CONCAT))
    # Characters outside the BMP take a surrogate pair: two UTF-16 code units.
    if len(text.encode("utf-16-le")) // 2 <= UCS2_SINGLE:
        return SegmentInfo("UCS-2", 1)
    costs = [2 if ord(ch) > 0xFFFF else 1 for ch in text]
    return SegmentInfo("UCS-2", _pack(costs, UCS2_SINGLE, UCS2_CONCAT))
