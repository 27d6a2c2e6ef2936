"""Twilio Programmable Voice: a call that reads the code out twice (API.md section 15).

Send: `POST {base_url}/2010-04-01/Accounts/{AccountSid}/Calls.json`, form-encoded `To`, `From` (the
route's `from`: a Twilio number), `Twiml` (inline TwiML, at most TWIML_MAX_CHARS characters),
`StatusCallback` (the route's receipt URL), `StatusCallbackEvent` (initiated, ringing, answered,
completed: one parameter each) and `StatusCallbackMethod` POST; HTTP Basic auth with the Account SID and
Auth Token, as for SMS. 201 answers the call resource (`sid` CA..., `status` queued); an error answers
`{"code", "message", "status"}`. `OutgoingSms.text` is what the call says once
(otp.templating.voice_text); the TwiML says it, pauses a second and says it again.

Status callbacks: the form `CallSid`, `CallStatus`, ... signed with `X-Twilio-Signature` exactly as the
Messages callbacks (senders.gateways.twilio.check_signature).
"""

import base64
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode
from xml.sax.saxutils import escape, quoteattr

from senders.gateways.base import (
    GatewayResult,
    OutgoingSms,
    PermanentGatewayError,
    Receipt,
    ReceiptRequest,
    TransientGatewayError,
)
from senders.gateways.transport import ProviderGateway, json_object, post
from senders.gateways.twilio import DEFAULT_BASE_URL, TRANSIENT_STATUSES, check_signature
from zeckta.channels import Channel

TWIML_MAX_CHARS = 4000  # Twilio's limit on the Twiml parameter of a call
E164 = re.compile(r"\+[1-9]\d{5,14}")
# A call's statuses as the contract names them: a call under way is "sent"; one that was answered and
# ended is delivered; one that never reached anyone failed for good (API.md section 15).
STATUS_MAP = {
    "queued": "sent",
    "initiated": "sent",
    "ringing": "sent",
    "in-progress": "sent",
    "completed": "delivered",
    "busy": "undeliverable",
    "failed": "undeliverable",
    "no-answer": "undeliverable",
    "canceled": "undeliverable",
}
CALLBACK_EVENTS = ("initiated", "ringing", "answered", "completed")

# <Say> language and voice per language (and region): Amazon Polly voices that Twilio offers, each with
# the language code Twilio pairs it with (a voice with another language fails the <Say>). A language
# with no voice there (Swahili, among the service's texts) is read by the en-US voice: see
# docs/providers.md.
SAY_VOICES: dict[str, tuple[str, str]] = {
    "en": ("en-US", "Polly.Joanna"),
    "en-US": ("en-US", "Polly.Joanna"),
    "en-GB": ("en-GB", "Polly.Amy"),
    "en-AU": ("en-AU", "Polly.Nicole"),
    "en-IN": ("en-IN", "Polly.Aditi"),
    "fr": ("fr-FR", "Polly.Celine"),
    "fr-CA": ("fr-CA", "Polly.Chantal"),
    "pt": ("pt-BR", "Polly.Camila"),
    "pt-BR": ("pt-BR", "Polly.Camila"),
    "pt-PT": ("pt-PT", "Polly.Ines"),
    "es": ("es-ES", "Polly.Lucia"),
    "es-MX": ("es-MX", "Polly.Mia"),
    "es-US": ("es-US", "Polly.Lupe"),
    "ar": ("arb", "Polly.Zeina"),
    "de": ("de-DE", "Polly.Marlene"),
    "it": ("it-IT", "Polly.Carla"),
}
SAY_FALLBACK = SAY_VOICES["en"]


def say_voice(locale: str) -> tuple[str, str]:
    """(language, voice) of <Say> for a BCP 47 tag: its language and region, else its language, else en-US."""
    parts = [part for part in locale.replace("_", "-").split("-") if part]
    if not parts:
        return SAY_FALLBACK
    language = parts[0].lower()
    for part in parts[1:]:
        if len(part) == 2 and f"{language}-{part.upper()}" in SAY_VOICES:
            return SAY_VOICES[f"{language}-{part.upper()}"]
    return SAY_VOICES.get(language, SAY_FALLBACK)


def twiml(text: str, locale: str) -> str:
    """The call's TwiML: the text, a second's pause, the text again, in the locale's voice (XML-escaped)."""
    language, voice = say_voice(locale)
    say = f"<Say language={quoteattr(language)} voice={quoteattr(voice)}>{escape(text)}</Say>"
    return f'<Response>{say}<Pause length="1"/>{say}</Response>'


class TwilioVoiceGateway(ProviderGateway):
    provider = "twilio_voice"
    channel = Channel.VOICE
    required_settings = ("account_sid", "auth_token", "from")
    optional_settings = ("base_url", "timeout")
    default_base_url = DEFAULT_BASE_URL

    def send(self, message: OutgoingSms) -> GatewayResult:
        document = twiml(message.text, message.locale)
        if len(document) > TWIML_MAX_CHARS:
            # Twilio would refuse it; no retry or other Twilio route can make the text shorter.
            raise PermanentGatewayError(
                f"the call's TwiML is {len(document)} characters, over Twilio's {TWIML_MAX_CHARS}", error_code="twiml"
            )
        form: list[tuple[str, str]] = [("To", message.to), ("From", self.setting("from")), ("Twiml", document)]
        if message.receipt_url:
            form += [("StatusCallback", message.receipt_url), ("StatusCallbackMethod", "POST")]
            form += [("StatusCallbackEvent", event) for event in CALLBACK_EVENTS]
        account_sid = self.setting("account_sid")
        credentials = base64.b64encode(f"{account_sid}:{self.setting('auth_token')}".encode()).decode()
        answer = post(
            f"{self.base_url}/2010-04-01/Accounts/{account_sid}/Calls.json",
            body=urlencode(form).encode(),
            headers={
                "Authorization": f"Basic {credentials}",
                "Accept": "application/json",
                "Content-Type": "application/x-www-form-urlencoded",
            },
            timeout=self.timeout,
        )
        data = json_object(answer.body)
        if 200 <= answer.status < 300:
            return GatewayResult(
                provider_message_id=str(data.get("sid") or "")[:200], provider_status=str(data.get("status") or "")
            )
        code = str(data.get("code") or answer.status)
        if answer.status >= 500 or answer.status in TRANSIENT_STATUSES:
            raise TransientGatewayError(f"twilio voice error: HTTP {answer.status}, code {code}", error_code=code)
        raise PermanentGatewayError(f"twilio refused the call: HTTP {answer.status}, code {code}", error_code=code)

    def parse_receipts(self, request: ReceiptRequest) -> list[Receipt]:
        check_signature(self.setting("auth_token"), request)
        call_status = request.form.get("CallStatus", "")
        status = STATUS_MAP.get(call_status)
        sid = request.form.get("CallSid", "")
        if status is None or not sid:
            return []
        # SipResponseCode says why a call failed, where Twilio knows (486 busy, 404 no such number ...).
        return [
            Receipt(
                provider_message_id=sid,
                status=status,
                provider_status=call_status,
                error_code=request.form.get("SipResponseCode", "") if status != "delivered" else "",
            )
        ]

    @classmethod
    def settings_problem(cls, values: Mapping[str, Any]) -> str | None:
        if not E164.fullmatch(str(values.get("from", ""))):
            return "from is the Twilio number the call comes from, in E.164 with its + (e.g. +14155550100)"
        return None
