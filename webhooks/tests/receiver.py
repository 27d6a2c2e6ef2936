"""A webhook receiver on 127.0.0.1 for tests: it records every request as received (raw bytes, so a
signature can be checked on exactly what came over the wire) and answers as scripted, then 200."""

import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from senders.tests.loopback import serve, shutdown

ENDLESS_LIMIT_BYTES = 64 * 1024 * 1024  # an "endless" body gives up after this much, should a client read on


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: bytes = b"ok"
    headers: dict[str, str] = field(default_factory=dict)
    endless: bool = False  # a chunked body that never ends (until the client hangs up)
    delay: float = 0.0  # seconds before answering


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]  # names in lower case
    body: bytes


@dataclass
class Receiver:
    url: str = ""
    port: int = 0
    requests: list[Received] = field(default_factory=list)
    script: list[Reply] = field(default_factory=list)
    endless_bytes_written: int = 0  # by the last endless reply, before the client hung up
    client_hung_up: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    def reply(self, *replies: Reply | int) -> None:
        """Queues answers for the next requests; a bare int is a status code."""
        with self._lock:
            self.script.extend(r if isinstance(r, Reply) else Reply(status=r) for r in replies)

    @property
    def calls(self) -> int:
        with self._lock:
            return len(self.requests)

    def _next(self, received: Received) -> Reply:
        with self._lock:
            self.requests.append(received)
            return self.script.pop(0) if self.script else Reply()

    def start(self, port: int = 0, tls: ssl.SSLContext | None = None) -> "Receiver":
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                reply = receiver._next(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                if reply.delay:
                    threading.Event().wait(reply.delay)
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    if reply.endless:
                        self.send_header("Transfer-Encoding", "chunked")
                        self.end_headers()
                        self._endless()
                        return
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                except (BrokenPipeError, ConnectionResetError):
                    receiver.client_hung_up.set()

            def _endless(self) -> None:
                chunk = b"x" * 65536
                framed = b"%x\r\n%s\r\n" % (len(chunk), chunk)
                receiver.endless_bytes_written = 0
                while receiver.endless_bytes_written < ENDLESS_LIMIT_BYTES:
                    self.wfile.write(framed)
                    receiver.endless_bytes_written += len(chunk)
                self.wfile.write(b"0\r\n\r\n")

            def log_message(self, format: str, *args) -> None:  # noqa: A002
                pass

        server = serve(Handler, port, tls)
        self._server = server
        self.port = server.server_address[1]
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}/hooks/zeckta"
        return self

    def stop(self) -> None:
        shutdown(self._server)
        self._server = None
