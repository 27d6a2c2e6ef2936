"""Stand-ins for the WhatsApp Business Cloud API, Twilio's Calls resource and Vonage's Voice API on
127.0.0.1, written from each provider's public documentation (never from the service's client), each
refusing what its provider refuses, the provider's way. Accepted calls take the next scripted answer,
else a plain acceptance with a new id. The helpers below them build what each provider posts back
(statuses, events) and sign it the provider's way.

WhatsApp: `POST /{version}/{phone_number_id}/messages`, `Authorization: Bearer`, JSON; an authentication
template must name an approved template and language and carry exactly one body parameter and one
parameter for the url button at index "0"; `to` must be E.164 with its `+` (stricter than Meta, which
also takes digits: API.md section 15 says the service sends the `+`). Errors as `{"error": {"code",
"message", "type", "fbtrace_id"}}`.
Twilio: `POST /2010-04-01/Accounts/{AccountSid}/Calls.json`, Basic auth, form with `To`, `From` and `Twiml`
(or `Url`), `Twiml` at most 4000 characters and well-formed with a `<Response>` root (Twilio reports a
TwiML that does not parse only once the call runs; the fake refuses it at once), `StatusCallbackEvent`
values among Twilio's four.
Vonage: `POST /v1/calls`, `Authorization: Bearer <JWT>` checked as Vonage does (RS256 with the
application's public key, `application_id`, `iat`, `exp`, `jti`), JSON with `to` (numbers without `+`),
`from`, an `ncco` or `answer_url`, `event_url` a list of one URL.
"""

import base64
import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs
from xml.etree import ElementTree

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from senders.tests.fake_providers import Body, Call, FakeProvider
from senders.tests.fake_twilio import ACCOUNT_SID, AUTH_TOKEN

# --- WhatsApp Business Cloud API -----------------------------------------------------------------------

WA_PHONE_NUMBER_ID = "106540352242922"
WA_ACCESS_TOKEN = "EAAJB-whatsapp-access-token-for-tests"
WA_APP_SECRET = "whatsapp-app-secret-for-tests"
WA_VERIFY_TOKEN = "whatsapp-verify-token-for-tests"
WA_TEMPLATE = "zeckta_otp"
# The languages the fake's template was approved in (Meta refuses any other with 132001).
WA_APPROVED_LANGUAGES = frozenset({"en", "en_US", "fr", "pt_BR", "es", "ar", "sw"})


def whatsapp_error(code: int, message: str, *, subcode: int | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"message": message, "type": "OAuthException", "code": code, "fbtrace_id": "AbCdEf"}
    if subcode is not None:
        error["error_subcode"] = subcode
    return {"error": error}


@dataclass
class FakeWhatsApp(FakeProvider):
    approved_languages: frozenset[str] = WA_APPROVED_LANGUAGES

    def problem(self, call: Call) -> tuple[int, Body] | None:
        parts = call.path.strip("/").split("/")
        if len(parts) != 3 or not parts[0].startswith("v") or parts[2] != "messages":
            return 400, whatsapp_error(100, "Unknown path components", subcode=2500)
        if call.headers.get("authorization") != f"Bearer {WA_ACCESS_TOKEN}":
            return 401, whatsapp_error(190, "Invalid OAuth access token - Cannot parse access token")
        if parts[1] != WA_PHONE_NUMBER_ID:
            return 400, whatsapp_error(100, "Unsupported post request. Object does not exist", subcode=33)
        body = call.json
        if call.headers.get("content-type", "").split(";")[0] != "application/json" or not body:
            return 400, whatsapp_error(100, "The parameter messaging_product is required.")
        if body.get("messaging_product") != "whatsapp":
            return 400, whatsapp_error(100, "The parameter messaging_product is required.")
        to = body.get("to")
        if not isinstance(to, str) or not to:
            return 400, whatsapp_error(100, "The parameter to is required.")
        if not to.startswith("+") or not to[1:].isdigit():
            return 400, whatsapp_error(131009, "Parameter value is not valid")
        if body.get("type") != "template" or not isinstance(body.get("template"), dict):
            return 400, whatsapp_error(100, "Param template is required")
        template = body["template"]
        language = template.get("language") if isinstance(template.get("language"), dict) else {}
        if template.get("name") != WA_TEMPLATE or language.get("code") not in self.approved_languages:
            return 404, whatsapp_error(132001, "Template name does not exist in the translation")
        if not _authentication_components(template.get("components")):
            return 400, whatsapp_error(132000, "Number of parameters does not match the expected number of params")
        return None

    def acceptance(self, call: Call, number: int) -> tuple[int, Body]:
        to = call.json["to"]
        return 200, {
            "messaging_product": "whatsapp",
            "contacts": [{"input": to, "wa_id": to.lstrip("+")}],
            "messages": [{"id": f"wamid.HBgLMjMzMjAyMDA3NzQ1FQIAERgS{number:08d}", "message_status": "accepted"}],
        }


def _authentication_components(components: object) -> bool:
    """An authentication template with a copy-code button takes one body parameter (the code) and one
    parameter for its url button at index 0 (the code again), both of type text."""
    if not isinstance(components, list) or len(components) != 2:
        return False
    by_type = {component.get("type"): component for component in components if isinstance(component, dict)}
    body, button = by_type.get("body"), by_type.get("button")
    if body is None or button is None:
        return False
    if button.get("sub_type") != "url" or str(button.get("index")) != "0":
        return False
    for component in (body, button):
        parameters = component.get("parameters")
        if not isinstance(parameters, list) or len(parameters) != 1:
            return False
        if parameters[0].get("type") != "text" or not parameters[0].get("text"):
            return False
    return True


def whatsapp_status_body(
    message_id: str,
    status: str,
    *,
    timestamp: int | None = None,
    errors: list[dict[str, Any]] | None = None,
    phone_number_id: str = WA_PHONE_NUMBER_ID,
) -> bytes:
    """A status webhook as Meta posts it (`field: messages`, one status)."""
    entry: dict[str, Any] = {
        "id": message_id,
        "status": status,
        "timestamp": str(timestamp if timestamp is not None else int(time.time())),
        "recipient_id": "233202007745",
    }
    if errors:
        entry["errors"] = errors
    return json.dumps(
        {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": "102290129340398",
                    "changes": [
                        {
                            "value": {
                                "messaging_product": "whatsapp",
                                "metadata": {"display_phone_number": "15550783881", "phone_number_id": phone_number_id},
                                "statuses": [entry],
                            },
                            "field": "messages",
                        }
                    ],
                }
            ],
        }
    ).encode()


def whatsapp_signature(body: bytes, secret: str = WA_APP_SECRET) -> str:
    """Meta's `X-Hub-Signature-256` of a webhook body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


# --- Twilio Calls ---------------------------------------------------------------------------------------

TWILIO_FROM = "+14155550100"
TWIML_MAX_CHARS = 4000
CALL_EVENTS = frozenset({"initiated", "ringing", "answered", "completed"})


def twilio_error(status: int, code: int, message: str) -> tuple[int, Body]:
    return status, {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


class FakeTwilioCalls(FakeProvider):
    def problem(self, call: Call) -> tuple[int, Body] | None:
        if call.path != f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls.json":
            return twilio_error(404, 20404, "The requested resource was not found")
        expected = "Basic " + base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
        if call.headers.get("authorization") != expected:
            return twilio_error(401, 20003, "Authenticate")
        form = call.form
        if not form.get("To"):
            return twilio_error(400, 21201, "No 'To' number is specified")
        if not form.get("From"):
            return twilio_error(400, 21213, "No 'From' number is specified")
        if not form.get("Twiml") and not form.get("Url"):
            return twilio_error(400, 21205, "Url parameter is required")
        if len(form.get("Twiml", "")) > TWIML_MAX_CHARS:
            return twilio_error(400, 21218, f"Twiml is longer than {TWIML_MAX_CHARS} characters")
        if form.get("Twiml") and spoken(form["Twiml"]) is None:
            return twilio_error(400, 12100, "Document parse failure")
        events = parse_qs(call.raw.decode()).get("StatusCallbackEvent", [])
        if any(event not in CALL_EVENTS for event in events):
            return twilio_error(400, 21626, "StatusCallbackEvent is not valid")
        return None

    def acceptance(self, call: Call, number: int) -> tuple[int, Body]:
        form = call.form
        return 201, {"sid": f"CA{number:032d}", "status": "queued", "to": form["To"], "from": form["From"]}


def spoken(twiml: str) -> list[tuple[str, str, str]] | None:
    """The (language, voice, text) of each <Say> of a TwiML document; None when it is no <Response>."""
    try:
        root = ElementTree.fromstring(twiml)  # noqa: S314 (a test fake, parsing what the service under test sent)
    except ElementTree.ParseError:
        return None
    if root.tag != "Response":
        return None
    return [(say.get("language", ""), say.get("voice", ""), say.text or "") for say in root.iter("Say")]


# --- Vonage Voice ---------------------------------------------------------------------------------------

VONAGE_APPLICATION_ID = "aaaaaaaa-bbbb-cccc-dddd-0123456789ab"
VONAGE_VOICE_FROM = "447700900000"
VONAGE_VOICE_SIGNATURE_SECRET = "vonage-voice-signature-secret-for-tests"
VONAGE_API_KEY = "abcd1234"
_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
VONAGE_PRIVATE_KEY = _KEY.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
).decode()
NCCO_ACTIONS = frozenset({"talk", "stream", "input", "record", "conversation", "connect", "notify", "wait"})


def vonage_error(status: int, kind: str, title: str, detail: str = "") -> tuple[int, Body]:
    return status, {"type": f"https://developer.nexmo.com/api-errors#{kind}", "title": title, "detail": detail}


@dataclass
class FakeVonageVoice(FakeProvider):
    public_key: rsa.RSAPublicKey = field(default_factory=_KEY.public_key)

    def problem(self, call: Call) -> tuple[int, Body] | None:
        if call.path != "/v1/calls":
            return vonage_error(404, "not-found", "Not Found")
        if not self._authorized(call.headers.get("authorization", "")):
            return vonage_error(401, "unauthorized", "Unauthorized", "You did not provide correct credentials.")
        body = call.json
        to = body.get("to")
        if not isinstance(to, list) or len(to) != 1 or not isinstance(to[0], dict):
            return vonage_error(400, "bad-request", "Bad Request", "to is required")
        if to[0].get("type") != "phone" or not str(to[0].get("number", "")).isdigit():
            return vonage_error(400, "bad-request", "Bad Request", "to.number must be digits, no +")
        source = body.get("from")
        if not isinstance(source, dict) or source.get("type") != "phone" or not str(source.get("number", "")).isdigit():
            return vonage_error(400, "bad-request", "Bad Request", "from.number must be digits, no +")
        ncco = body.get("ncco")
        if ncco is None and not body.get("answer_url"):
            return vonage_error(400, "bad-request", "Bad Request", "ncco or answer_url is required")
        if ncco is not None and not _valid_ncco(ncco):
            return vonage_error(400, "bad-request", "Bad Request", "ncco is not valid")
        event_url = body.get("event_url")
        if event_url is not None and (not isinstance(event_url, list) or len(event_url) != 1):
            return vonage_error(400, "bad-request", "Bad Request", "event_url is an array of one URL")
        return None

    def _authorized(self, authorization: str) -> bool:
        """Vonage's check of the application JWT: RS256 over `header.claims` with the application's public
        key, an `application_id` of this application, `iat` not ahead, `exp` not past, a `jti`."""
        token = authorization.removeprefix("Bearer ")
        parts = token.split(".")
        if not authorization.startswith("Bearer ") or len(parts) != 3:
            return False
        try:
            header = json.loads(_unb64(parts[0]))
            claims = json.loads(_unb64(parts[1]))
            if header.get("alg") != "RS256":
                return False
            self.public_key.verify(
                _unb64(parts[2]), f"{parts[0]}.{parts[1]}".encode(), padding.PKCS1v15(), hashes.SHA256()
            )
        except (ValueError, InvalidSignature):
            return False
        now = time.time()
        return (
            claims.get("application_id") == VONAGE_APPLICATION_ID
            and isinstance(claims.get("iat"), int)
            and claims["iat"] <= now + 60
            and isinstance(claims.get("exp"), int)
            and claims["exp"] > now
            and bool(claims.get("jti"))
        )

    def acceptance(self, call: Call, number: int) -> tuple[int, Body]:
        return 201, {
            "uuid": str(uuid.UUID(int=number)),
            "status": "started",
            "direction": "outbound",
            "conversation_uuid": f"CON-{uuid.UUID(int=number + 1 << 64)}",
        }


def _valid_ncco(ncco: object) -> bool:
    if not isinstance(ncco, list) or not ncco:
        return False
    for action in ncco:
        if not isinstance(action, dict) or action.get("action") not in NCCO_ACTIONS:
            return False
        if action["action"] == "talk" and not (isinstance(action.get("text"), str) and action["text"]):
            return False
    return True


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def vonage_event_body(call_uuid: str, status: str, **extra: Any) -> bytes:
    """A voice event as Vonage posts it to the event_url (compact JSON)."""
    event = {
        "from": VONAGE_VOICE_FROM,
        "to": "233202007745",
        "uuid": call_uuid,
        "conversation_uuid": "CON-00000000-0000-0000-0000-000000000001",
        "status": status,
        "direction": "outbound",
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
        **extra,
    }
    return json.dumps(event, separators=(",", ":")).encode()


def vonage_event_authorization(
    body: bytes, *, secret: str = VONAGE_VOICE_SIGNATURE_SECRET, iat: float | None = None, **claims: Any
) -> str:
    """What Vonage sends with a signed callback: a Bearer JWT, HS256 with the signature secret, its
    `payload_hash` the SHA-256 of the body."""
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = {
        "iat": int(iat if iat is not None else time.time()),
        "jti": str(uuid.uuid4()),
        "iss": "Vonage",
        "payload_hash": hashlib.sha256(body).hexdigest(),
        "api_key": VONAGE_API_KEY,
        "application_id": VONAGE_APPLICATION_ID,
        **claims,
    }
    signing_input = f"{header}.{_b64(json.dumps(payload).encode())}"
    signature = _b64(hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest())
    return f"Bearer {signing_input}.{signature}"
