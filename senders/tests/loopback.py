"""The plumbing every provider fake shares: an HTTP server on a free 127.0.0.1 port, and JSON answers."""

import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def serve(
    handler: type[BaseHTTPRequestHandler], port: int = 0, tls: ssl.SSLContext | None = None
) -> ThreadingHTTPServer:
    """Starts serving in a daemon thread; each request in its own thread, never waited for at shutdown.
    `port` 0 is a free one; a given port lets a stopped fake come back where its clients point. With
    `tls`, it serves HTTPS."""
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    server.daemon_threads = True
    server.block_on_close = False  # do not wait for handlers still sleeping out a scripted delay
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server


def shutdown(server: ThreadingHTTPServer | None) -> None:
    if server is not None:
        server.shutdown()
        server.server_close()


def write_json(handler: BaseHTTPRequestHandler, status: int, body: object) -> None:
    write_body(handler, status, json.dumps(body).encode(), content_type="application/json")


def write_body(handler: BaseHTTPRequestHandler, status: int, data: bytes, *, content_type: str) -> None:
    try:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the client timed out and hung up, as a test intended
