"""The SMS gateway backends on their own: what each sends, and how the http one classifies failures."""

import json
import socket

import pytest

from senders.gateways import (
    GatewayResult,
    OutgoingSms,
    PermanentGatewayError,
    TransientGatewayError,
    get_gateway,
    locmem,
)
from senders.gateways.console import ConsoleGateway
from senders.gateways.file import FileGateway
from senders.gateways.http import HttpGateway
from senders.gateways.locmem import LocmemGateway
from senders.tests.fake_gateway import Answer, FakeGateway

SMS = OutgoingSms(to="+233202007745", src="ZECKTA", text="Your code is 482913", reference="ref-1")


@pytest.fixture
def gateway(settings):
    fake = FakeGateway().start()
    settings.SMS_BACKEND = "http"
    settings.SMS_HTTP_URL = fake.url
    settings.SMS_HTTP_TOKEN = "secret-token"
    settings.SMS_HTTP_TIMEOUT = 2.0
    yield fake
    fake.stop()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --- choosing a backend -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("console", ConsoleGateway),
        ("file", FileGateway),
        ("locmem", LocmemGateway),
        ("senders.gateways.locmem.LocmemGateway", LocmemGateway),
    ],
)
def test_it_picks_the_backend_named_by_sms_backend(settings, name, cls):
    settings.SMS_BACKEND = name
    assert type(get_gateway()) is cls


def test_the_message_repr_hides_the_text():
    assert "482913" not in repr(SMS)
    assert "ref-1" in repr(SMS)


# --- development and test backends --------------------------------------------------------------


def test_console_writes_the_sms_to_stdout(capsys):
    result = ConsoleGateway().send(SMS)
    out = capsys.readouterr().out
    assert "to=+233202007745" in out and "ref=ref-1" in out and SMS.text in out
    assert result == GatewayResult(provider_message_id="console-ref-1")


def test_file_appends_one_json_line_per_sms(settings, tmp_path):
    settings.SMS_FILE_PATH = str(tmp_path / "outbox.jsonl")
    FileGateway().send(SMS)
    result = FileGateway().send(SMS)
    lines = (tmp_path / "outbox.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == [
        {"to": "+233202007745", "from": "ZECKTA", "text": SMS.text, "reference": "ref-1"}
    ] * 2
    assert result.provider_message_id == "file-ref-1"


def test_locmem_keeps_the_sms_in_memory():
    result = LocmemGateway().send(SMS)
    assert locmem.outbox == [SMS]
    assert result.provider_message_id == "locmem-ref-1"


# --- http ----------------------------------------------------------------------------------------


def test_http_posts_the_json_contract_with_the_bearer_token(gateway):
    gateway.answer(Answer(200, {"id": "abc"}))
    result = HttpGateway().send(SMS)
    assert result == GatewayResult(provider_message_id="abc")
    assert gateway.calls == 1
    received = gateway.requests[0]
    assert received.json == {"to": "+233202007745", "from": "ZECKTA", "text": SMS.text, "reference": "ref-1"}
    assert received.headers["authorization"] == "Bearer secret-token"
    assert received.headers["content-type"] == "application/json"
    assert received.path == "/sms"


def test_http_sends_no_authorization_header_without_a_token(gateway, settings):
    settings.SMS_HTTP_TOKEN = ""
    HttpGateway().send(SMS)
    assert "authorization" not in gateway.requests[0].headers


@pytest.mark.parametrize(
    ("answer", "expected_id"),
    [
        (Answer(201, {"id": 12345}), "12345"),  # any 2xx; a numeric id is kept as text
        (Answer(202, {"status": "accepted"}), ""),  # no id
        (Answer(200, ["not", "an", "object"]), ""),
        (Answer(200, {"id": "x" * 500}), "x" * 200),  # kept within the column
    ],
)
def test_http_accepts_any_2xx_and_keeps_the_id_when_there_is_one(gateway, answer, expected_id):
    gateway.answer(answer)
    assert HttpGateway().send(SMS).provider_message_id == expected_id


def test_http_accepts_a_2xx_whose_body_is_not_json(gateway):
    gateway.answer(Answer(200, raw=b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
    assert HttpGateway().send(SMS).provider_message_id == ""


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422, 429])
def test_http_4xx_is_a_permanent_failure(gateway, status):
    gateway.answer(status)
    with pytest.raises(PermanentGatewayError) as excinfo:
        HttpGateway().send(SMS)
    assert str(status) in str(excinfo.value)
    assert SMS.text not in str(excinfo.value)
    assert gateway.calls == 1


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_http_5xx_is_transient(gateway, status):
    gateway.answer(status)
    with pytest.raises(TransientGatewayError, match=str(status)):
        HttpGateway().send(SMS)
    assert gateway.calls == 1


def test_http_a_redirect_is_not_followed_and_is_permanent(gateway):
    # Following it would turn the POST into a body-less GET whose 2xx would count as sent.
    gateway.answer(Answer(302, raw=b"HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\nContent-Length: 0\r\n\r\n"))
    with pytest.raises(PermanentGatewayError, match="302"):
        HttpGateway().send(SMS)
    assert gateway.calls == 1


def test_http_timeout_is_transient(gateway, settings):
    settings.SMS_HTTP_TIMEOUT = 0.3
    gateway.answer(Answer(200, delay=1.5))
    with pytest.raises(TransientGatewayError, match="timed out"):
        HttpGateway().send(SMS)
    assert gateway.calls == 1  # the gateway got it; the retry's same reference lets it drop the duplicate


def test_http_connection_refused_is_transient(settings):
    settings.SMS_HTTP_URL = f"http://127.0.0.1:{_closed_port()}/sms"
    with pytest.raises(TransientGatewayError, match="unreachable"):
        HttpGateway().send(SMS)


def test_http_a_garbled_answer_is_transient(gateway):
    gateway.answer(Answer(raw=b"this is not HTTP\r\n\r\n"))
    with pytest.raises(TransientGatewayError):
        HttpGateway().send(SMS)
    assert gateway.calls == 1


@pytest.mark.parametrize("url", ["", "file:///etc/passwd", "ftp://example.com/sms"])
def test_http_without_a_usable_url_fails_permanently(settings, url):
    settings.SMS_HTTP_URL = url
    with pytest.raises(PermanentGatewayError):
        HttpGateway()
