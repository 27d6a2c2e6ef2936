"""Stand-ins for Vonage, Infobip and Africa's Talking on 127.0.0.1, each speaking its provider's wire
format and refusing anything else (wrong path, credentials, encoding or missing fields) the provider's
way. Accepted calls take the next scripted answer, else a plain acceptance with a new message id.

What each refuses as its provider does: Vonage a `callback` over 100 characters (status 23); Infobip a
reused `messageId` (REJECTED_DUPLICATE_MESSAGE_ID), and its delivery reports come as the real ones do,
DELIVERED_TO_OPERATOR first and then the final one; Africa's Talking answers its errors as plain text
and, without `Accept: application/json`, answers XML.
"""

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from senders.tests.loopback import serve, shutdown, write_body, write_json

# What a fake answers: JSON (a dict), or a text body with its content type (Africa's Talking's errors).
Body = dict[str, Any] | tuple[str, str]


@dataclass(frozen=True)
class Call:
    path: str
    headers: dict[str, str]  # names lowercased
    form: dict[str, str]
    json: dict[str, Any]
    accepted: bool
    raw: bytes = b""  # the body as it came (a repeated form name: every value is here)


@dataclass(frozen=True)
class Scripted:
    """An answer for the next accepted call: an HTTP status and the body the fake sends, or a delay."""

    status: int = 200
    body: dict[str, Any] | None = None
    delay: float = 0.0


@dataclass
class FakeProvider:
    base_url: str = ""
    calls: list[Call] = field(default_factory=list)
    script: list[Scripted] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    # --- what each provider defines --------------------------------------------------------------

    def problem(self, call: Call) -> tuple[int, Body] | None:
        raise NotImplementedError

    def acceptance(self, call: Call, number: int) -> tuple[int, Body]:
        raise NotImplementedError

    def taken(self, call: Call) -> None:
        """The provider holds the message from now on (called as the call arrives, before any delay)."""

    # --- the plumbing -------------------------------------------------------------------------------

    def answer(self, *answers: Scripted) -> None:
        with self._lock:
            self.script.extend(answers)

    @property
    def accepted(self) -> list[Call]:
        with self._lock:
            return [call for call in self.calls if call.accepted]

    def start(self) -> "FakeProvider":
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                content_type = self.headers.get("Content-Type", "").split(";")[0].strip()
                form = (
                    {name: values[0] for name, values in parse_qs(raw.decode(errors="replace")).items()}
                    if content_type == "application/x-www-form-urlencoded"
                    else {}
                )
                try:
                    body = json.loads(raw) if content_type == "application/json" else {}
                except ValueError:
                    body = {}
                # Header names are case-insensitive (urllib sends `Apikey`): kept lowercased.
                headers = {name.lower(): value for name, value in self.headers.items()}
                received = Call(self.path, headers, form, body if isinstance(body, dict) else {}, False, raw)
                refusal = fake.problem(received)
                with fake._lock:
                    call = Call(received.path, received.headers, received.form, received.json, refusal is None, raw)
                    fake.calls.append(call)
                    number = len(fake.calls)
                    scripted = fake.script.pop(0) if refusal is None and fake.script else None
                    if refusal is None and (scripted is None or scripted.body is None):
                        fake.taken(call)  # a scripted error answer means the provider did not take it
                if scripted is not None and scripted.delay:
                    time.sleep(scripted.delay)
                if refusal is not None:
                    status, answer = refusal
                elif scripted is not None and scripted.body is not None:
                    status, answer = scripted.status, scripted.body
                else:
                    status, answer = fake.acceptance(call, number)
                if isinstance(answer, tuple):
                    content_type, text = answer
                    write_body(self, status, text.encode(), content_type=content_type)
                else:
                    write_json(self, status, answer)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self._server = serve(Handler)
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}"
        return self

    def stop(self) -> None:
        shutdown(self._server)
        self._server = None


# --- Vonage ---------------------------------------------------------------------------------------

VONAGE_KEY, VONAGE_SECRET, VONAGE_SIGNATURE_SECRET = "abcd1234", "vonage-api-secret", "vonage-signature-secret"


class FakeVonage(FakeProvider):
    """`POST /sms/json`, form-encoded, credentials in the form; errors as `messages[0].status` (HTTP 200),
    a `callback` over 100 characters included (23, Invalid Callback Url)."""

    def problem(self, call: Call) -> tuple[int, Body] | None:
        if call.path != "/sms/json":
            return 404, {"error": "not found"}
        form = call.form
        if not form:
            return 200, vonage_answer(status="2", error="Missing from param")  # not a form: nothing read
        if (form.get("api_key"), form.get("api_secret")) != (VONAGE_KEY, VONAGE_SECRET):
            return 200, vonage_answer(status="4", error="Bad Credentials")
        if not all(form.get(name) for name in ("from", "to", "text")):
            return 200, vonage_answer(status="2", error="Missing to param")
        if form["to"].startswith("+") or not form["to"].isdigit():
            return 200, vonage_answer(status="3", error="Invalid to param")
        if len(form.get("callback", "")) > 100:
            return 200, vonage_answer(status="23", error="Invalid Callback Url")
        return None

    def acceptance(self, call: Call, number: int) -> tuple[int, Body]:
        return 200, vonage_answer(status="0", message_id=f"0C0000{number:010d}", to=call.form["to"])


def vonage_answer(*, status: str, error: str = "", message_id: str = "", to: str = "") -> dict[str, Any]:
    message: dict[str, Any] = {"status": status, "to": to}
    if status == "0":
        message.update(
            {"message-id": message_id, "remaining-balance": "15.5", "message-price": "0.03", "network": "62001"}
        )
    else:
        message["error-text"] = error
    return {"message-count": "1", "messages": [message]}


# --- Infobip --------------------------------------------------------------------------------------

INFOBIP_KEY = "infobip-api-key"


@dataclass
class FakeInfobip(FakeProvider):
    """`POST /sms/2/text/advanced`, JSON, `Authorization: App <key>`; errors as `requestError`. A messageId
    it already took is refused per message (REJECTED_DUPLICATE_MESSAGE_ID, HTTP 200), as Infobip does."""

    message_ids: set[str] = field(default_factory=set)

    def problem(self, call: Call) -> tuple[int, Body] | None:
        if call.path != "/sms/2/text/advanced":
            return 404, infobip_error("NOT_FOUND")
        if call.headers.get("authorization") != f"App {INFOBIP_KEY}":
            return 401, infobip_error("UNAUTHORIZED")
        messages = call.json.get("messages")
        if not isinstance(messages, list) or not messages or not messages[0].get("destinations"):
            return 400, infobip_error("BAD_REQUEST")
        if not messages[0].get("text") or not messages[0]["destinations"][0].get("to"):
            return 400, infobip_error("BAD_REQUEST")
        destination = messages[0]["destinations"][0]
        with self._lock:
            duplicate = destination.get("messageId") in self.message_ids
        if duplicate:
            return 200, infobip_answer(destination, status=INFOBIP_STATUSES["REJECTED_DUPLICATE_MESSAGE_ID"])
        return None

    def taken(self, call: Call) -> None:
        message_id = call.json["messages"][0]["destinations"][0].get("messageId")
        if message_id:
            self.message_ids.add(message_id)

    def acceptance(self, call: Call, number: int) -> tuple[int, Body]:
        destination = call.json["messages"][0]["destinations"][0]
        return 200, infobip_answer(
            {"messageId": f"ib-{number}", **destination},
            status=INFOBIP_STATUSES["PENDING_ACCEPTED"],
            bulk_id=f"bulk-{number}",
        )

    def reports(self, call: Call, *, final: str = "DELIVERED_TO_HANDSET") -> list[tuple[str, bytes]]:
        """The delivery reports Infobip posts for an accepted call, in order, as (notifyUrl's path and
        query, JSON body): DELIVERED_TO_OPERATOR, then `final`."""
        [entry] = call.json["messages"]
        url = urlsplit(entry["notifyUrl"])
        message_id = entry["destinations"][0]["messageId"]
        return [
            (f"{url.path}?{url.query}", json.dumps({"results": [infobip_report(message_id, name)]}).encode())
            for name in ("DELIVERED_TO_OPERATOR", final)
        ]


# Infobip's status objects by name (id, group id, group name), from its message status codes.
INFOBIP_STATUSES: dict[str, dict[str, Any]] = {
    name: {"groupId": group_id, "groupName": group, "id": status_id, "name": name}
    for name, status_id, group_id, group in [
        ("PENDING_ACCEPTED", 26, 1, "PENDING"),
        ("DELIVERED_TO_OPERATOR", 2, 3, "DELIVERED"),
        ("DELIVERED_TO_HANDSET", 5, 3, "DELIVERED"),
        ("UNDELIVERABLE_NOT_DELIVERED", 9, 2, "UNDELIVERABLE"),
        ("EXPIRED_EXPIRED", 15, 4, "EXPIRED"),
        ("REJECTED_NETWORK", 6, 5, "REJECTED"),
        ("REJECTED_DUPLICATE_MESSAGE_ID", 23, 5, "REJECTED"),
    ]
}


def infobip_answer(destination: dict[str, Any], *, status: dict[str, Any], bulk_id: str = "") -> dict[str, Any]:
    answer: dict[str, Any] = {
        "messages": [{"to": destination["to"], "messageId": destination["messageId"], "status": status}]
    }
    return {"bulkId": bulk_id, **answer} if bulk_id else answer


def infobip_report(message_id: str, status: str) -> dict[str, Any]:
    """One result of a delivery report, with the error object Infobip puts beside a failure."""
    failed = INFOBIP_STATUSES[status]["groupName"] in ("UNDELIVERABLE", "EXPIRED", "REJECTED")
    error = (
        {"groupId": 1, "groupName": "HANDSET_ERRORS", "id": 27, "name": "EC_ABSENT_SUBSCRIBER", "permanent": False}
        if failed
        else {"groupId": 0, "groupName": "OK", "id": 0, "name": "NO_ERROR", "permanent": False}
    )
    return {
        "messageId": message_id,
        "to": "233202007745",
        "sentAt": "2026-12-07T09:00:00.000+0000",
        "doneAt": "2026-12-07T09:00:02.000+0000",
        "smsCount": 1,
        "status": INFOBIP_STATUSES[status],
        "error": error,
    }


def infobip_error(message_id: str) -> dict[str, Any]:
    return {"requestError": {"serviceException": {"messageId": message_id, "text": "refused by the fake"}}}


# --- Africa's Talking -----------------------------------------------------------------------------

AT_USERNAME, AT_KEY = "zeckta", "africastalking-api-key"


class FakeAfricasTalking(FakeProvider):
    """`POST /version1/messaging`, form-encoded, the `apiKey` header; per-recipient statusCode. Its
    errors are plain text, as Africa's Talking's are, and without `Accept: application/json` it answers
    XML (its default)."""

    def problem(self, call: Call) -> tuple[int, Body] | None:
        if call.path != "/version1/messaging":
            return 404, ("text/plain", "Not Found")
        if call.headers.get("apikey") != AT_KEY or call.form.get("username") != AT_USERNAME:
            return 401, ("text/plain", "The supplied authentication is invalid")
        if not call.form.get("to") or not call.form.get("message"):
            return 400, ("text/plain", "Request is missing required form field 'to'")
        return None

    def acceptance(self, call: Call, number: int) -> tuple[int, Body]:
        answer = at_answer(status_code=101, status="Success", message_id=f"ATXid_{number:06d}", number=call.form["to"])
        if call.headers.get("accept") != "application/json":
            recipient = answer["SMSMessageData"]["Recipients"][0]
            return 201, (
                "application/xml",
                "<AfricasTalkingResponse><SMSMessageData><Recipients><Recipient>"
                f"<statusCode>101</statusCode><messageId>{recipient['messageId']}</messageId>"
                "</Recipient></Recipients></SMSMessageData></AfricasTalkingResponse>",
            )
        return 201, answer


def at_answer(*, status_code: int, status: str, message_id: str = "None", number: str = "") -> dict[str, Any]:
    return {
        "SMSMessageData": {
            "Message": "Sent to 1/1 Total Cost: GHS 0.0300",
            "Recipients": [
                {
                    "statusCode": status_code,
                    "number": number,
                    "status": status,
                    "cost": "GHS 0.0300",
                    "messageId": message_id,
                }
            ],
        }
    }
