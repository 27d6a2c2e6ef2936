"""Server-side request forgery: what a URL may be when saved, and what the sender refuses at send time.

Tests run with DEBUG=False (the test settings). The resolver is replaced only where a public-looking
name must resolve to a chosen address: that answer is the boundary under test (DNS rebinding).
"""

import datetime as dt
import ipaddress
import socket
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from webhooks import transport
from webhooks.delivery import webhook_deliver
from webhooks.models import Event, WebhookDelivery, WebhookEndpoint
from webhooks.signing import secret_encrypt, secret_new, secret_prefix
from webhooks.tests.factories import endpoint_for, record_event
from webhooks.tests.receiver import Receiver, Reply

pytestmark = pytest.mark.django_db


@pytest.fixture
def resolver(monkeypatch) -> dict[str, list[str]]:
    """Names the test makes resolve to addresses of its choice; every other name resolves as usual."""
    answers: dict[str, list[str]] = {}
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host in answers:
            return [
                (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (a, port))
                for a in answers[host]
            ]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(transport.socket, "getaddrinfo", getaddrinfo)
    return answers


def stored_endpoint(workspace, url: str) -> WebhookEndpoint:
    """An endpoint row as an older release (or a DNS change since) may have left it: no check on save."""
    secret = secret_new()
    return WebhookEndpoint.objects.create(
        workspace=workspace,
        url=url,
        events=["otp.approved"],
        encrypted_secret=secret_encrypt(secret),
        secret_prefix=secret_prefix(secret),
    )


def attempt(workspace) -> WebhookDelivery:
    [delivery] = record_event(workspace)
    webhook_deliver(delivery_id=delivery.pk)
    delivery.refresh_from_db()
    return delivery


# --- when saved ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url, problem",
    [
        ("http://example.com/hooks", "must use https"),
        ("ftp://example.com/hooks", "valid URL"),
        ("https:///hooks", "valid URL"),
        ("https://example.com:99999/hooks", "valid URL"),
        ("https://user:pass@example.com/hooks", "credentials"),
        ("https://example.com/hooks#part", "fragment"),
        ("https://example.com/ho oks", "spaces"),
        ("https://localhost/hooks", "private"),
        ("https://api.localhost/hooks", "private"),
        ("https://127.0.0.1/hooks", "private"),
        ("https://10.1.2.3/hooks", "private"),
        ("https://169.254.169.254/latest/meta-data", "private"),
        ("https://100.64.0.1/hooks", "private"),
        ("https://[::1]/hooks", "private"),
        ("https://[::ffff:10.0.0.1]/hooks", "private"),
        ("https://224.0.0.1/hooks", "private"),
        ("https://0.0.0.0/hooks", "private"),
        ("https://[fec0::1]/hooks", "private"),  # site-local: Python 3.11's is_global lets it through
        ("https://[feff::1]/hooks", "private"),
        ("https://[3fff::1]/hooks", "private"),  # documentation (RFC 9637), unknown to Python 3.11
        ("https://192.0.0.9/hooks", "private"),
        ("https://192.88.99.1/hooks", "private"),
        ("https://[::ffff:127.0.0.1]/hooks", "private"),
        ("https://[64:ff9b::a00:1]/hooks", "private"),  # NAT64 of 10.0.0.1
        ("https://[64:ff9b:1::a00:1]/hooks", "private"),
        ("https://example.com/" + "a" * 2000, "at most 2000"),
    ],
)
def test_a_url_that_is_not_https_to_a_public_host_is_refused(url, problem):
    assert problem in transport.url_problem(url)


@pytest.mark.parametrize(
    "address, public",
    [
        ("93.184.215.14", True),
        ("2606:2800:21f:cb07:6820:80da:af6b:8b2c", True),
        ("fec0::1", False),
        ("fefe:1::1", False),
        ("3fff:fff::1", False),
        ("100.64.0.1", False),
        ("100.127.255.254", False),
        ("192.0.0.1", False),
        ("192.0.0.170", False),
        ("192.88.99.1", False),
        ("::ffff:127.0.0.1", False),
        ("::ffff:100.64.0.1", False),
        ("64:ff9b::7f00:1", False),
        ("64:ff9b::c0a8:101", False),
        ("64:ff9b:1::1", False),
        ("2001:db8::1", False),
        ("2002:a00:1::1", False),
        ("2001:0:4136:e378:8000:63bf:f5ff:fffe", False),  # Teredo
    ],
)
def test_only_global_unicast_addresses_are_public(address, public):
    assert transport.address_is_public(ipaddress.ip_address(address)) is public


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/hooks",
        "https://example.com:8443/hooks?tenant=7",
        "https://93.184.215.14/hooks",
        "https://[2606:2800:21f:cb07:6820:80da:af6b:8b2c]/hooks",
    ],
)
def test_an_https_url_of_a_public_host_is_accepted(url):
    assert transport.url_problem(url) is None


def test_an_allowed_host_may_use_http_and_a_private_address(settings):
    settings.WEBHOOK_ALLOWED_HOSTS = ["receiver.internal", "10.0.0.8"]
    assert transport.url_problem("http://receiver.internal:8080/hooks") is None
    assert transport.url_problem("http://10.0.0.8/hooks") is None
    assert transport.url_problem("http://other.internal/hooks") == "The URL must use https."


def test_with_debug_on_private_hosts_may_be_saved_but_https_is_still_required(settings):
    settings.DEBUG = True
    assert transport.url_problem("https://localhost:8443/hooks") is None
    assert transport.url_problem("http://localhost:8000/hooks") == "The URL must use https."


# --- when sending ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url, address",
    [
        ("https://localhost/hooks", None),
        ("https://127.0.0.1/hooks", "127.0.0.1"),
        ("https://10.20.30.40/hooks", "10.20.30.40"),
        ("https://169.254.169.254/latest/meta-data", "169.254.169.254"),
        ("https://[::1]/hooks", "::1"),
    ],
)
def test_a_private_loopback_or_link_local_address_is_refused_when_sending(workspace, url, address):
    stored_endpoint(workspace, url)

    delivery = attempt(workspace)

    assert delivery.status == "pending" and delivery.attempts == 1 and delivery.last_status_code is None
    assert delivery.last_error.startswith("refused: the host resolves to a non-public address")
    assert address is None or f"({address})" in delivery.last_error


@pytest.mark.parametrize(
    "answers",
    [
        ["10.0.0.7"],
        ["169.254.169.254"],
        ["93.184.215.14", "127.0.0.1"],
        ["::ffff:192.168.1.1"],
        ["100.100.100.200"],
        ["fec0::1"],
        ["64:ff9b::7f00:1"],
        ["::ffff:127.0.0.1"],
        ["192.0.0.10"],
    ],
)
def test_a_public_name_that_resolves_to_a_private_address_is_refused_when_sending(workspace, resolver, answers):
    endpoint_for(workspace, "https://hooks.example.com/zeckta")  # fine when saved
    resolver["hooks.example.com"] = answers  # then the DNS answer changes

    delivery = attempt(workspace)

    assert delivery.last_error.startswith("refused: the host resolves to a non-public address")


def test_an_http_url_is_refused_when_sending_unless_its_host_is_allowed(workspace):
    stored_endpoint(workspace, "http://example.com/hooks")
    assert attempt(workspace).last_error == "refused: the URL must use https"


def test_an_allowed_host_is_called_at_the_address_it_resolves_to_with_its_name_as_host(workspace, settings, resolver):
    receiver = Receiver().start()
    try:
        settings.WEBHOOK_ALLOWED_HOSTS = ["receiver.internal"]
        resolver["receiver.internal"] = ["127.0.0.1"]
        endpoint_for(workspace, f"http://receiver.internal:{receiver.port}/hooks?tenant=7")

        assert attempt(workspace).status == "delivered"
    finally:
        receiver.stop()
    [request] = receiver.requests
    assert request.path == "/hooks?tenant=7"
    assert request.headers["host"] == f"receiver.internal:{receiver.port}"


def test_a_redirect_is_not_followed_and_counts_as_a_failed_attempt(workspace, receiver):
    endpoint_for(workspace, receiver.url)
    receiver.reply(Reply(302, b"", headers={"Location": receiver.url + "/elsewhere"}))

    delivery = attempt(workspace)

    assert receiver.calls == 1
    assert (delivery.status, delivery.last_status_code) == ("pending", 302)
    assert delivery.last_error == "HTTP 302 (redirects are not followed)"


def test_an_endless_answer_is_not_read_past_the_cap(workspace, receiver):
    endpoint_for(workspace, receiver.url)
    receiver.reply(Reply(500, endless=True))

    delivery = attempt(workspace)

    assert (delivery.status, delivery.last_status_code) == ("pending", 500)
    assert delivery.last_error == "HTTP 500: " + "x" * transport.LAST_ERROR_BODY_CHARACTERS
    assert receiver.client_hung_up.wait(timeout=10)  # it stopped reading and closed the connection
    assert receiver.endless_bytes_written < 64 * 1024 * 1024


def test_a_receiver_that_does_not_answer_in_time_is_a_failed_attempt(workspace, receiver, settings):
    settings.WEBHOOK_TIMEOUT_SECONDS = 0.3
    endpoint_for(workspace, receiver.url)
    receiver.reply(Reply(200, delay=2))

    delivery = attempt(workspace)

    assert (delivery.status, delivery.last_error) == ("pending", "no answer within 0.3s")


# --- TLS to the checked address ------------------------------------------------------------------


def _certificate(name: str, key, issuer_name: x509.Name, issuer_key, *, ca: bool) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture
def tls_receiver(tmp_path, monkeypatch):
    """An HTTPS receiver on 127.0.0.1 whose certificate names hooks.example.test, issued by a test CA the
    sender is told to trust; it records the name each client asked for (SNI)."""
    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Zeckta test CA")])
    ca = _certificate("Zeckta test CA", ca_key, ca_name, ca_key, ca=True)
    leaf = _certificate("hooks.example.test", leaf_key, ca_name, ca_key, ca=False)
    (tmp_path / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "leaf.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "leaf.key").write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "leaf.pem", tmp_path / "leaf.key")
    server_names: list[str | None] = []
    context.sni_callback = lambda sock, name, ctx: server_names.append(name)
    monkeypatch.setattr(transport, "CA_CERTS", str(tmp_path / "ca.pem"))
    receiver = Receiver().start(tls=context)
    receiver.server_names = server_names  # type: ignore[attr-defined]
    yield receiver
    receiver.stop()


def test_tls_goes_to_the_checked_address_and_verifies_the_certificate_against_the_host_name(
    workspace, settings, resolver, tls_receiver
):
    settings.DEBUG = True  # the address rules are off, so that loopback stands in for a public address
    resolver["hooks.example.test"] = ["127.0.0.1"]
    resolver["wrong-name.example.test"] = ["127.0.0.1"]
    endpoint_for(workspace, f"https://hooks.example.test:{tls_receiver.port}/hooks", [Event.OTP_APPROVED])
    endpoint_for(workspace, f"https://wrong-name.example.test:{tls_receiver.port}/hooks", [Event.OTP_CANCELED])
    [good] = record_event(workspace, Event.OTP_APPROVED)
    [bad] = record_event(workspace, Event.OTP_CANCELED)

    assert webhook_deliver(delivery_id=good.pk) == "delivered"
    assert webhook_deliver(delivery_id=bad.pk) == "pending"

    assert tls_receiver.server_names == ["hooks.example.test", "wrong-name.example.test"]
    [request] = tls_receiver.requests
    assert request.headers["host"] == f"hooks.example.test:{tls_receiver.port}"
    bad.refresh_from_db()
    assert bad.last_error.startswith("TLS failed:") and "hooks.example.test" in bad.last_error
