"""A scriptable SMS provider on 127.0.0.1 for tests of the `http` backend.

Each POST takes the next scripted answer (status, JSON body, delay before answering); once the script
runs out every call is accepted with 200 and a generated `id`. Every request is recorded, including
the ones whose answer the client gave up waiting for: the provider did receive them.
"""

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from senders.tests.loopback import serve, shutdown, write_json

HOLD_LIMIT_SECONDS = 120  # a held call is let go after this, should a test forget to release it


@dataclass(frozen=True)
class Answer:
    status: int = 200
    body: dict | None = None  # None: {"id": "fake-<n>"} for a 2xx, {"error": "..."} otherwise
    delay: float = 0.0  # seconds to wait before answering; longer than the client timeout = a timeout
    raw: bytes | None = None  # written as-is instead of an HTTP answer (a broken gateway)
    hold: threading.Event | None = None  # the provider hangs mid-call until the test sets it


@dataclass(frozen=True)
class ReceivedRequest:
    path: str
    headers: dict[str, str]
    json: dict


@dataclass
class FakeGateway:
    url: str = ""
    requests: list[ReceivedRequest] = field(default_factory=list)
    script: list[Answer] = field(default_factory=list)
    received: threading.Event = field(default_factory=threading.Event)  # set on every request
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    def answer(self, *answers: Answer | int) -> None:
        """Queues answers for the next calls; a bare int is a status code."""
        with self._lock:
            self.script.extend(a if isinstance(a, Answer) else Answer(status=a) for a in answers)

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.script.clear()
            self.received.clear()

    @property
    def calls(self) -> int:
        with self._lock:
            return len(self.requests)

    def texts(self) -> list[str]:
        with self._lock:
            return [r.json.get("text", "") for r in self.requests]

    def _next(self, received: ReceivedRequest) -> tuple[Answer, int]:
        with self._lock:
            self.requests.append(received)
            number = len(self.requests)
            answer = self.script.pop(0) if self.script else Answer()
        self.received.set()
        return answer, number

    def start(self) -> "FakeGateway":
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    payload = json.loads(raw or b"{}")
                except ValueError:
                    payload = {"_raw": raw.decode(errors="replace")}
                answer, number = gateway._next(
                    ReceivedRequest(
                        path=self.path, headers={k.lower(): v for k, v in self.headers.items()}, json=payload
                    )
                )
                if answer.hold is not None:
                    answer.hold.wait(timeout=HOLD_LIMIT_SECONDS)
                if answer.delay:
                    time.sleep(answer.delay)
                if answer.raw is not None:
                    self.wfile.write(answer.raw)
                    self.close_connection = True
                    return
                body = answer.body
                if body is None:
                    body = {"id": f"fake-{number}"} if 200 <= answer.status < 300 else {"error": "scripted"}
                write_json(self, answer.status, body)

            def log_message(self, format: str, *args) -> None:  # noqa: A002
                pass  # keep test output quiet

        server = serve(Handler)
        self._server = server
        self.url = f"http://127.0.0.1:{server.server_address[1]}/sms"
        return self

    def stop(self) -> None:
        shutdown(self._server)
        self._server = None
