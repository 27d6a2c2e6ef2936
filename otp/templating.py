"""The texts of an OTP: the service's default texts per language and purpose (templates/otp/<tag>/<PURPOSE>.txt,
with TRANSACTION_DETAILS.txt for a TRANSACTION request that carries a transaction), which text a request
gets and in which language (`text_choose`), and what a voice call says (`voice_text`).

The order, for a request's purpose and `locale` (API.md section 15; docs/api.md says it to clients):

1. The language. The first tag, of the request's tag and its truncations (`pt-BR`, then `pt`), then the
   workspace's locale and its truncations, then `en`, that has a text for the purpose: a workspace text,
   the workspace's default template when the tag is in the workspace's language, or a default text.
   That tag is the session's locale (OtpSession.locale).
2. The text, in that language: the request's `messageTemplate`; else the workspace's text for the
   purpose and that tag, then its truncations (a text kept for `pt` serves `pt-BR`); else the workspace's
   default template (`default_message_template`, one text for every purpose, written in the workspace's
   language: it is used only for a tag of that language, so a client that asks for French never gets an
   English template); else the default text of that tag (or its language).

A workspace text or template that names <AMOUNT> or <PAYEE> only serves a request with a transaction.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache

from django.conf import settings

from zeckta.channels import DEFAULT_LOCALE
from zeckta.locales import locale_language, locale_lookup_chain
from zeckta.sms_text import TRANSACTION_PLACEHOLDERS

# The default text of a TRANSACTION request that carries a transaction: it names amount and payee.
TRANSACTION_DETAILS = "TRANSACTION_DETAILS"

# (purpose, locale) -> the workspace's own text (otp.models.WorkspaceText), as otp.selectors reads them.
WorkspaceTexts = Mapping[tuple[str, str], str]


@cache
def default_texts() -> dict[str, dict[str, str]]:
    """Every default text, read once per process: {tag: {purpose or TRANSACTION_DETAILS: template}}."""
    root = settings.BASE_DIR / "templates" / "otp"
    return {
        directory.name: {path.stem: path.read_text(encoding="utf-8").strip() for path in directory.glob("*.txt")}
        for directory in sorted(root.iterdir())
        if directory.is_dir()
    }


def default_template(purpose: str, locale: str = DEFAULT_LOCALE) -> str:
    """The default text for `purpose` in `locale` (a tag, or its language; else English)."""
    return _default_in(locale, purpose) or default_texts()[DEFAULT_LOCALE][purpose]


def transaction_template(locale: str = DEFAULT_LOCALE) -> str:
    """The default text of a TRANSACTION request that carries a transaction: it names amount and payee."""
    return default_template(TRANSACTION_DETAILS, locale)


def _default_in(locale: str, name: str) -> str | None:
    texts = default_texts()
    for tag in locale_lookup_chain(locale):
        if tag in texts:
            return texts[tag][name]
    return None


@dataclass(frozen=True)
class ChosenText:
    locale: str  # the resolved tag, kept as the session's locale
    template: str


def text_choose(
    *,
    purpose: str,
    requested_locale: str | None,
    workspace_locale: str,
    workspace_template: str,
    workspace_texts: WorkspaceTexts,
    transaction: bool,
    message_template: str | None = None,
) -> ChosenText:
    """The language and the template of a request (the order is this module's docstring). Tags are
    normalised (zeckta.locales.locale_normalise); `workspace_template` is its default_message_template
    ("" when unset). Never fails: `en` always has texts."""

    def usable(template: str | None) -> bool:
        # A text that names the amount or the payee needs a request that carries them.
        if not template:
            return False
        return transaction or not any(placeholder in template for placeholder in TRANSACTION_PLACEHOLDERS)

    workspace_language = locale_language(workspace_locale)

    def own_text(tag: str) -> str | None:
        for candidate in locale_lookup_chain(tag):
            text = workspace_texts.get((purpose, candidate))
            if usable(text):
                return text
        return None

    def workspace_default(tag: str) -> str | None:
        return workspace_template if locale_language(tag) == workspace_language and usable(workspace_template) else None

    name = TRANSACTION_DETAILS if transaction and purpose == "TRANSACTION" else purpose
    candidates = [
        *(locale_lookup_chain(requested_locale) if requested_locale else []),
        *locale_lookup_chain(workspace_locale),
        DEFAULT_LOCALE,
    ]
    for tag in dict.fromkeys(candidates):  # in order, each once
        own = usable(workspace_texts.get((purpose, tag))) or workspace_default(tag) is not None
        if own or tag in default_texts():
            template = message_template or own_text(tag) or workspace_default(tag) or default_template(name, tag)
            return ChosenText(tag, template)
    raise AssertionError("unreachable: en has a default text for every purpose")


# What a voice call says before the digits, per language; the digits follow one by one, separated so that
# a text-to-speech engine reads each on its own ("4, 8, 2", not "four hundred and eighty-two"). Accents
# stay here: a call has no GSM-7 to fit, and a TTS voice pronounces "código" right and "codigo" wrong.
_VOICE_INTRO = {
    "en": "Your verification code is:",
    "fr": "Votre code de vérification est :",
    "pt": "O seu código de verificação é:",
    "es": "Tu código de verificación es:",
    "ar": "رمز التحقق الخاص بك هو:",
    "sw": "Msimbo wako wa uthibitisho ni:",
}
# Arabic separates with its own comma, which Arabic voices pause on.
_VOICE_SEPARATOR = {"ar": "، "}


def voice_text(*, code: str, locale: str) -> str:
    """What a voice call says once (the backend says it twice, API.md section 15): the code digit by digit,
    each digit its own word, in the session's language. `locale` is the session's resolved tag (`pt-BR`
    speaks Portuguese); a language without a voice text speaks English."""
    language = next((tag for tag in locale_lookup_chain(locale) if tag in _VOICE_INTRO), DEFAULT_LOCALE)
    digits = _VOICE_SEPARATOR.get(language, ", ").join(code)
    return f"{_VOICE_INTRO[language]} {digits}."
