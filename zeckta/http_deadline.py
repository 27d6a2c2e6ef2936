"""A wall-clock deadline for an outbound HTTP call made with urllib3 (webhooks, SMS providers).

urllib3's `Timeout(total=...)` does not bound a call. It sets the socket's time-out once per connection
from what remains of the total, and a time-out on a socket bounds each single read or write, not their
sum: a server that sends one byte of its answer every few seconds never lets one read wait that long,
and holds the call, and the worker running it, for as long as it likes (checked against such a server:
a 2 s total was still waiting after 30 s). So the deadline is enforced from outside. `with
Deadline(seconds):` registers the block with the process's watchdog; when its time comes, every socket
the call opened or reused is shut down, which ends whatever read or write is blocked on it with an error,
whatever the stage: TLS handshake, request body, headers or body of the answer. Only the connection
classes below report their sockets: the pools of the two transports are built with them.

One watchdog thread per process serves every deadline (a heap of them, in end order): a thread started
per call cost the SMS worker about 0.3 ms a send, a sixth of a whole delivery (`make profile deliver`).

Not covered: the name resolution of a provider's host (getaddrinfo cannot be interrupted; the system
resolver bounds it), and nothing at all outside a `with Deadline` block. The Celery task time limits
are the last resort behind both.
"""

import contextvars
import heapq
import itertools
import os
import socket
import threading
import time
from types import TracebackType
from typing import Any

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection

_current: contextvars.ContextVar["Deadline | None"] = contextvars.ContextVar("http_deadline", default=None)


class Deadline:
    """The block's calls end within `seconds` (plus the moment an error takes to surface): afterwards
    `expired` tells a call cut by the deadline from one that failed on its own."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._finished = False
        # Held while sockets are shut down, and by the block's exit: once the block is left, no socket
        # (a pooled one may serve the next call) can be shut down by this deadline any more.
        self._lock = threading.Lock()
        self._token: contextvars.Token | None = None

    def __enter__(self) -> "Deadline":
        self._token = _current.set(self)
        _watchdog().add(time.monotonic() + self.seconds, self)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        # Left in the watchdog's heap until its time: finished, it is then dropped without a look.
        with self._lock:
            self._finished = True
            self._sockets.clear()
        if self._token is not None:
            _current.reset(self._token)

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            if self._finished:
                return
            if self.expired:
                _shut_down(sock)  # connected just as the time ran out: no use going on
            else:
                self._sockets.append(sock)

    def _expire(self) -> None:
        with self._lock:
            if self._finished:
                return
            self.expired = True
            for sock in self._sockets:
                _shut_down(sock)


class _Watchdog:
    """The thread that ends the deadlines of one process: it sleeps until the earliest one is due."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Deadline]] = []
        self._order = itertools.count()  # ties on the same end keep their order (deadlines do not compare)
        self._wake = threading.Condition()
        self.pid = os.getpid()
        threading.Thread(target=self._run, name="http-deadlines", daemon=True).start()

    def add(self, at: float, deadline: Deadline) -> None:
        with self._wake:
            heapq.heappush(self._heap, (at, next(self._order), deadline))
            if self._heap[0][2] is deadline:
                self._wake.notify()  # sooner than what the thread sleeps towards

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._heap or self._heap[0][0] > time.monotonic():
                    self._wake.wait(self._heap[0][0] - time.monotonic() if self._heap else None)
                _, _, due = heapq.heappop(self._heap)
            due._expire()  # outside the condition: shutting sockets down must not hold up new calls


_watchdog_of_process: _Watchdog | None = None
_watchdog_lock = threading.Lock()


def _watchdog() -> _Watchdog:
    """This process's watchdog, started on first use: a forked child (a Celery pool process, a gunicorn
    worker) does not inherit its parent's thread, so it starts its own."""
    global _watchdog_of_process
    watchdog = _watchdog_of_process
    if watchdog is None or watchdog.pid != os.getpid():
        with _watchdog_lock:
            if _watchdog_of_process is None or _watchdog_of_process.pid != os.getpid():
                _watchdog_of_process = _Watchdog()
            watchdog = _watchdog_of_process
    return watchdog


def _shut_down(sock: socket.socket) -> None:
    try:
        # The plain socket's shutdown, on the file descriptor only, even for a TLS socket: SSLSocket's own
        # would drop its TLS state under a read still running in the calling thread.
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass  # already closed or never connected: nothing left to stop


def _watch(sock: socket.socket | None) -> None:
    deadline = _current.get()
    if deadline is not None and sock is not None:
        deadline.watch(sock)


class DeadlineHTTPConnection(HTTPConnection):
    """Reports its socket to the current Deadline: a new one as soon as it is connected, a reused
    (kept-alive) one when a request starts on it."""

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _watch(sock)
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        _watch(self.sock)
        super().request(*args, **kwargs)


class DeadlineHTTPSConnection(HTTPSConnection):
    """DeadlineHTTPConnection over TLS: the plain socket is watched before the handshake, so a server
    trickling its handshake is cut too."""

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _watch(sock)
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        _watch(self.sock)  # an SSLSocket (a socket) once connected
        super().request(*args, **kwargs)


class DeadlineHTTPConnectionPool(urllib3.HTTPConnectionPool):
    ConnectionCls = DeadlineHTTPConnection


class DeadlineHTTPSConnectionPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = DeadlineHTTPSConnection


def deadline_pool_manager(**kwargs: Any) -> urllib3.PoolManager:
    """A PoolManager whose connections report to the current Deadline."""
    manager = urllib3.PoolManager(**kwargs)
    manager.pool_classes_by_scheme = {"http": DeadlineHTTPConnectionPool, "https": DeadlineHTTPSConnectionPool}
    return manager
