"""A slow-loris HTTP server on 127.0.0.1 for tests: it reads the request, then answers one byte at a time,
a byte every `interval` seconds, for as long as the client stays. Each read of such an answer succeeds
well within any per-read time-out; only a deadline on the whole call ends it."""

import socket
import threading
from dataclasses import dataclass, field

BODY_BYTES = 10_000


@dataclass
class TrickleServer:
    """`body_first`: the head (status line and headers, with a Content-Length) comes at once and the body
    trickles; otherwise the head itself trickles."""

    interval: float = 0.5  # seconds between two bytes
    body_first: bool = False
    status: int = 200
    port: int = 0
    connections: int = 0
    hung_up: threading.Event = field(default_factory=threading.Event)  # a client closed mid-answer
    _socket: socket.socket | None = None
    _stopped: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def start(self) -> "TrickleServer":
        listener = socket.create_server(("127.0.0.1", 0))
        self._socket, self.port = listener, listener.getsockname()[1]
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        if self._socket is not None:
            self._socket.close()

    def _accept(self, listener: socket.socket) -> None:
        while not self._stopped.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:
                return  # stopped
            self.connections += 1
            threading.Thread(target=self._answer, args=(connection,), daemon=True).start()

    def _answer(self, connection: socket.socket) -> None:
        head = f"HTTP/1.1 {self.status} Whatever\r\nContent-Type: application/json\r\n".encode()
        with connection:
            connection.recv(65536)  # the request: small enough for one read here
            if self.body_first:
                connection.sendall(head + f"Content-Length: {BODY_BYTES}\r\n\r\n".encode())
                slow = b"{" + b" " * (BODY_BYTES - 1)
            else:
                slow = head + b"X-Slow: " + b"a" * BODY_BYTES
            for byte in slow:
                if self._stopped.wait(self.interval):
                    return
                try:
                    connection.sendall(bytes([byte]))
                except OSError:
                    self.hung_up.set()
                    return
