"""A stand-in for Twilio's Messages resource on 127.0.0.1, speaking its wire format and nothing else.

It accepts only what Twilio accepts: `POST /2010-04-01/Accounts/{AccountSid}/Messages.json`, HTTP Basic
auth with that Account SID and the Auth Token, a form-encoded body with `To`, `Body` and `From` or
`MessagingServiceSid`. Anything else gets Twilio's own error shape (`{"code", "message", "status"}`).
Each accepted call takes the next scripted answer; once the script runs out it answers 201 with a new
`sid`. Every call is recorded, the refused ones included.
"""

import base64
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

from senders.tests.loopback import serve, shutdown, write_json

ACCOUNT_SID = "AC00000000000000000000000000000001"
AUTH_TOKEN = "twilio-auth-token-for-tests"


@dataclass(frozen=True)
class TwilioAnswer:
    status: int = 201
    code: int | None = None  # Twilio's error code, for an error answer
    sid: str | None = None  # the message sid of an accepted call (default: SM + a counter)
    delay: float = 0.0  # seconds before answering; longer than the client's timeout = a time-out


@dataclass(frozen=True)
class TwilioCall:
    path: str
    authorization: str
    content_type: str
    form: dict[str, str]
    accepted: bool


@dataclass
class FakeTwilio:
    base_url: str = ""
    calls: list[TwilioCall] = field(default_factory=list)
    script: list[TwilioAnswer] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    def answer(self, *answers: TwilioAnswer) -> None:
        with self._lock:
            self.script.extend(answers)

    @property
    def accepted(self) -> list[TwilioCall]:
        with self._lock:
            return [call for call in self.calls if call.accepted]

    def _problem(
        self, path: str, authorization: str, content_type: str, form: dict[str, str]
    ) -> tuple[int, int] | None:
        """Twilio's answer to a request it would refuse: (HTTP status, Twilio error code), else None."""
        if path != f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json":
            return 404, 20404
        expected = "Basic " + base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
        if authorization != expected:
            return 401, 20003
        if content_type.split(";")[0].strip() != "application/x-www-form-urlencoded":
            return 400, 21602  # Twilio reads a form: a JSON body has no Body parameter
        if "To" not in form:
            return 400, 21604
        if "Body" not in form:
            return 400, 21602
        if "From" not in form and "MessagingServiceSid" not in form:
            return 400, 21603
        return None

    def start(self) -> "FakeTwilio":
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                form = {name: values[0] for name, values in parse_qs(raw.decode(errors="replace")).items()}
                authorization = self.headers.get("Authorization", "")
                content_type = self.headers.get("Content-Type", "")
                problem = fake._problem(self.path, authorization, content_type, form)
                with fake._lock:
                    fake.calls.append(TwilioCall(self.path, authorization, content_type, form, problem is None))
                    number = len(fake.calls)
                    answer = fake.script.pop(0) if problem is None and fake.script else TwilioAnswer()
                if answer.delay:
                    time.sleep(answer.delay)
                if problem is not None:
                    status, code = problem
                    body = {"code": code, "message": "refused by the fake", "more_info": "", "status": status}
                elif answer.status >= 300:
                    status = answer.status
                    body = {"code": answer.code or 20500, "message": "scripted", "more_info": "", "status": status}
                else:
                    status = answer.status
                    body = {
                        "sid": answer.sid or f"SM{number:032d}",
                        "status": "queued",
                        "to": form["To"],
                        "body": form["Body"],
                    }
                write_json(self, status, body)

            def log_message(self, format: str, *args) -> None:  # noqa: A002
                pass

        server = serve(Handler)
        self._server = server
        self.base_url = f"http://127.0.0.1:{server.server_address[1]}"
        return self

    def stop(self) -> None:
        shutdown(self._server)
        self._server = None
