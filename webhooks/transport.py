"""The one HTTP client that calls workspaces' URLs, which anyone with an API key can point anywhere.

Server-side request forgery is the risk: an endpoint aimed at the cloud's metadata service
(169.254.169.254), the database's port on loopback, or a name whose DNS answer changes between the check
and the call (DNS rebinding). So, with DEBUG off, every send resolves the host itself, refuses it when an
address is not a public unicast one, and connects to the very address it checked (TLS still verifies the
certificate against the host name, sent as SNI, and `Host` names the host). Redirects are never followed,
the whole call ends within WEBHOOK_TIMEOUT_SECONDS (a total, not per read: zeckta.http_deadline) and at
most MAX_RESPONSE_BYTES of an answer are read. Hosts in WEBHOOK_ALLOWED_HOSTS (the operator's own
receivers) may use http and are exempt from the address rules.
"""

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

import urllib3
from django.conf import settings
from urllib3.exceptions import (
    HTTPError,
    NewConnectionError,
    ReadTimeoutError,
    SSLError,
    TimeoutError,
)

from webhooks.models import WEBHOOK_URL_MAX_LENGTH
from zeckta.http_deadline import Deadline, DeadlineHTTPConnectionPool, DeadlineHTTPSConnectionPool

MAX_RESPONSE_BYTES = 4 * 1024  # of an answer's body read, at most; the rest is never received
LAST_ERROR_BODY_CHARACTERS = 200  # of a non-2xx answer's body kept as the delivery's last error
# The trusted certificate authorities: None is the system's. Tests point it at their own CA.
CA_CERTS: str | None = None

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Answer:
    """What one attempt came to: the HTTP status (None when there was no answer) and why it failed."""

    status: int | None
    error: str = ""

    @property
    def accepted(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def host_allowed(host: str) -> bool:
    """A host of WEBHOOK_ALLOWED_HOSTS: http allowed, address rules off."""
    return host.lower().rstrip(".") in settings.WEBHOOK_ALLOWED_HOSTS


# Ranges that are not public unicast though some Python version's `is_global` says they are. On 3.11,
# fec0::/10 (site-local, deprecated by RFC 3879 but still routed inside some networks) and 3fff::/20
# (documentation, RFC 9637) pass; the registry changes between versions (3.12.4 and 3.13 moved 192.0.0.0/24
# and 64:ff9b:1::/48), so the ranges that matter here are named rather than left to the interpreter.
NOT_PUBLIC_NETWORKS = tuple(
    ipaddress.ip_network(network)
    for network in (
        "100.64.0.0/10",  # shared address space behind carrier-grade NAT (RFC 6598)
        "192.0.0.0/24",  # IETF protocol assignments (RFC 6890), its anycast services included
        "192.88.99.0/24",  # the deprecated 6to4 relay anycast (RFC 7526)
        "fec0::/10",  # site-local (RFC 3879)
        "3fff::/20",  # documentation (RFC 9637)
        "64:ff9b:1::/48",  # local-use NAT64 (RFC 8215)
        "2001::/23",  # IETF protocol assignments (RFC 2928)
    )
)
# The well-known NAT64 prefix (RFC 6052): its last 32 bits are the IPv4 address the gateway calls.
NAT64_NETWORK = ipaddress.IPv6Network("64:ff9b::/96")


def address_is_public(address: IpAddress) -> bool:
    """A global unicast address. Python's `is_global` alone lets multicast through (and, depending on the
    version, the NOT_PUBLIC_NETWORKS), and an IPv6 address can carry an IPv4 one (mapped, NAT64, 6to4,
    Teredo) that must pass the same test: ::ffff:127.0.0.1 and 64:ff9b::a00:1 reach 127.0.0.1 and 10.0.0.1."""
    if any(address in network for network in NOT_PUBLIC_NETWORKS if network.version == address.version):
        return False
    if isinstance(address, ipaddress.IPv6Address):
        nat64 = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF) if address in NAT64_NETWORK else None
        embedded = address.ipv4_mapped or nat64 or address.sixtofour or (address.teredo[1] if address.teredo else None)
        if embedded is not None and not address_is_public(embedded):
            return False
    return address.is_global and not (address.is_multicast or address.is_reserved or address.is_unspecified)


def url_problem(url: str) -> str | None:
    """Why `url` cannot be an endpoint, or None. What can be told without DNS: the address rules are
    applied again, on the resolved addresses, at every send."""
    if len(url) > WEBHOOK_URL_MAX_LENGTH:
        return f"Use a URL of at most {WEBHOOK_URL_MAX_LENGTH} characters."
    if any(character.isspace() or not character.isprintable() for character in url):
        return "A URL has no spaces or control characters."
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (parsing it raises ValueError for a bad port)
    except ValueError:
        return "Enter a valid URL, such as https://example.com/webhooks/zeckta."
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or not host:
        return "Enter a valid URL, such as https://example.com/webhooks/zeckta."
    allowed = host_allowed(host)
    if parts.scheme != "https" and not allowed:
        return "The URL must use https."
    if parts.username is not None or parts.password is not None:
        return "A URL with credentials is not accepted: check the signature instead."
    if parts.fragment:
        return "A URL has no #fragment: it is never sent to the server."
    if not settings.DEBUG and not allowed and _private_host(host):
        return "The URL's host is a private, loopback or link-local address."
    return None


def _private_host(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return not address_is_public(ipaddress.ip_address(host))
    except ValueError:
        return False  # a name: its addresses are checked when sending


def post(url: str, *, body: bytes, headers: dict[str, str]) -> Answer:
    """POSTs `body` once; never raises for what the receiver or the network does."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    allowed = host_allowed(host)
    if parts.scheme != "https" and not allowed:
        return Answer(None, "refused: the URL must use https")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        address = _checked_address(host, port, exempt=allowed or settings.DEBUG)
    except _Refused as refused:
        # A failed attempt like any other, so retried: a DNS record can be fixed within the retry window,
        # and a refusal costs no connection. After the window the endpoint shows as failing.
        return Answer(None, f"refused: {refused}")
    timeout = settings.WEBHOOK_TIMEOUT_SECONDS
    pool = _pool(parts, address=address, host=host, port=port, timeout=timeout)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    default_port = parts.port is None or parts.port == (443 if parts.scheme == "https" else 80)
    host_header = _bracketed(host) if default_port else f"{_bracketed(host)}:{port}"
    # WEBHOOK_TIMEOUT_SECONDS for the whole call, not for each read: a receiver trickling its answer a
    # byte at a time must not hold the worker (zeckta.http_deadline says why urllib3 alone does not).
    with Deadline(timeout) as deadline:
        try:
            return _call(pool, target, body=body, headers={**headers, "Host": host_header}, deadline=deadline)
        finally:
            pool.close()


def _call(
    pool: urllib3.HTTPConnectionPool, target: str, *, body: bytes, headers: dict[str, str], deadline: Deadline
) -> Answer:
    timeout = deadline.seconds
    try:
        response = pool.urlopen(
            "POST",
            target,
            body=body,
            headers=headers,
            redirect=False,
            retries=False,
            preload_content=False,
            assert_same_host=False,
        )
    except (HTTPError, OSError) as exc:  # every error of urllib3 derives from HTTPError
        return _unanswered(exc, timeout=timeout, cut=deadline.expired)
    try:
        if 200 <= response.status < 300:
            return Answer(response.status)  # accepted: whatever the body says does not matter
        return Answer(response.status, _failure(response))
    finally:
        response.close()  # never reused: the rest of the body is not ours to read


def _unanswered(exc: HTTPError | OSError, *, timeout: float, cut: bool) -> Answer:
    """The attempt that got no answer, and why. `cut`: the deadline shut its sockets down, and whatever
    urllib3 made of that (a connection aborted, a TLS error), the receiver took too long."""
    if cut or isinstance(exc, ReadTimeoutError):
        return Answer(None, f"no answer within {timeout:g}s")
    if isinstance(exc, NewConnectionError):  # before TimeoutError: urllib3 derives it from ConnectTimeoutError
        return Answer(None, f"could not connect: {_reason(exc)}")
    if isinstance(exc, TimeoutError):
        return Answer(None, f"could not connect within {timeout:g}s")
    if isinstance(exc, SSLError):
        return Answer(None, f"TLS failed: {_reason(exc)}")
    return Answer(None, f"the connection failed: {_reason(exc)}")


def _checked_address(host: str, port: int, *, exempt: bool) -> str:
    """The address to connect to: the first the resolver gives, once every one of them passed the rules."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        raise _Refused("the host name does not resolve") from None
    addresses = [str(info[4][0]) for info in infos]
    if not addresses:
        raise _Refused("the host name does not resolve")
    if not exempt:
        # Every address, not only the first: a host with one private address among public ones would
        # reach it whenever the resolver's order changes.
        private = [a for a in addresses if not address_is_public(ipaddress.ip_address(a.split("%")[0]))]
        if private:
            raise _Refused(f"the host resolves to a non-public address ({private[0]})")
    return addresses[0]


def _pool(parts: SplitResult, *, address: str, host: str, port: int, timeout: float) -> urllib3.HTTPConnectionPool:
    """A pool of one connection to `address`, used for this one call: no connection outlives the check
    of the address it goes to."""
    timeouts = urllib3.Timeout(connect=timeout, read=timeout)
    if parts.scheme == "https":
        return DeadlineHTTPSConnectionPool(
            address,
            port,
            timeout=timeouts,
            maxsize=1,
            retries=False,
            server_hostname=host,
            assert_hostname=host,
            cert_reqs="CERT_REQUIRED",
            ca_certs=CA_CERTS,
        )
    return DeadlineHTTPConnectionPool(address, port, timeout=timeouts, maxsize=1, retries=False)


def _failure(response: urllib3.BaseHTTPResponse) -> str:
    """`HTTP <status>: <the start of its body>`, reading at most MAX_RESPONSE_BYTES of it."""
    try:
        content = response.read(MAX_RESPONSE_BYTES)
    except (HTTPError, OSError):
        content = b""  # a body cut short or too slow: the status says enough
    text = " ".join(content.decode("utf-8", errors="replace").split())[:LAST_ERROR_BODY_CHARACTERS]
    moved = " (redirects are not followed)" if 300 <= response.status < 400 else ""
    return f"HTTP {response.status}{moved}" + (f": {text}" if text else "")


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _reason(exc: Exception) -> str:
    """The innermost cause's words, short."""
    cause: BaseException = exc
    while cause.__context__ is not None and cause.__context__ is not cause:
        cause = cause.__context__
    return (str(cause) or type(cause).__name__)[:200]


class _Refused(Exception):
    """The URL or its address is not one a webhook is sent to."""
