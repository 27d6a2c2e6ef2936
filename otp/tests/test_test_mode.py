"""Test mode (API.md section 10), over HTTP on both request paths: a zk_test_ key uses the same API and gets
the same answers, but nothing reaches a provider or is charged, its SMS land in the test inbox, and test and
live sessions never see each other."""

import re

import pytest
from cryptography.fernet import Fernet

from otp.apis import MESSAGE_SENT
from otp.crypto import decrypt_inbox_text
from otp.delivery import SMS_QUEUE
from otp.models import DailySmsCount, OtpSession, SmsMessage, TestInboxMessage, WrongCode
from otp.testmode import inbox_purge
from otp.tests.helpers import cancel, later, new_session, request_otp, resend, session_url, verify, wrong_code
from senders.gateways import locmem
from senders.tests.factories import SenderNameFactory
from workspaces.models import LedgerEntry, Workspace
from workspaces.tests.factories import WorkspaceFactory, issue_key
from zeckta.localcache import local_caches_clear
from zeckta.testing import DEST, api_client, assert_api_error, run_command

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("otp_path")]

INBOX_URL = "/v1/messaging/test-inbox"
OTHER_DEST = "+233244000002"


@pytest.fixture
def api_of_test_key(workspace, sender):
    """A client holding a zk_test_ key of `workspace` (whose sender ZECKTA is approved)."""
    _, raw_key = issue_key(workspace, name="tests", test=True)
    return api_client(raw_key)


def inbox(api, dest: str = DEST):
    return api.get(INBOX_URL, {"dest": dest})


def code_of(text: str, length: int = 6) -> str:
    return re.search(rf"\b\d{{{length}}}\b", text).group()


def test_a_test_request_answers_like_a_live_one_sends_nothing_and_puts_the_code_in_the_inbox(
    api_of_test_key, api, broker_queue, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True) as published:
        response = request_otp(api_of_test_key, DEST)

    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True and body["message"] == MESSAGE_SENT
    live_shape = set(request_otp(api, OTHER_DEST).json()["data"])
    assert set(body["data"]) == live_shape and body["data"]["reused"] is False
    session_id = body["data"]["sessionId"]
    # Nothing went anywhere: no task after commit, none on the broker, nothing in the provider's outbox.
    assert published == [] and broker_queue.llen(SMS_QUEUE) == 0 and locmem.outbox == []
    message = SmsMessage.objects.get(session__public_id=session_id)
    assert (message.status, message.is_test, message.attempts) == ("delivered", True, 0)
    assert message.delivered_at is not None and message.encrypted_text is None  # nothing left to send
    delivery = api_of_test_key.get(session_url(session_id)).json()["data"]["delivery"]
    assert (delivery["status"], delivery["route"], delivery["attempts"]) == ("delivered", "test-inbox", 0)
    assert delivery["deliveredAt"] is not None

    listed = inbox(api_of_test_key)
    assert listed.status_code == 200 and listed.json()["success"] is True
    [entry] = listed.json()["data"]
    assert set(entry) == {"sessionId", "dest", "src", "text", "createdAt"}
    assert (entry["sessionId"], entry["dest"], entry["src"]) == (session_id, DEST, "ZECKTA")
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", entry["createdAt"])

    approved = verify(api_of_test_key, session_id, code_of(entry["text"]))
    assert approved.status_code == 200 and approved.json()["data"]["status"] == "APPROVED"


def test_test_sms_cost_no_units_and_count_towards_no_daily_cap(api_of_test_key, api, workspace):
    Workspace.objects.filter(pk=workspace.pk).update(is_prepaid=True, balance_units=0, daily_sms_cap=1)

    for dest in (DEST, OTHER_DEST):  # a prepaid balance of 0, and more SMS than the daily cap
        assert request_otp(api_of_test_key, dest).status_code == 200

    workspace.refresh_from_db()
    assert workspace.balance_units == 0 and not LedgerEntry.objects.exists()
    assert not DailySmsCount.objects.exists()
    assert_api_error(request_otp(api, DEST), status=402, code="INSUFFICIENT_BALANCE")  # live keys still pay


def test_test_and_live_sessions_never_see_each_other(api_of_test_key, api):
    live = new_session(api)
    test = new_session(api_of_test_key)
    assert test != live  # a test request neither reuses nor replaces the live session, nor the reverse
    assert request_otp(api, DEST).json()["data"]["sessionId"] == live  # each mode reuses its own
    assert request_otp(api_of_test_key, DEST).json()["data"]["sessionId"] == test

    for caller, other in ((api, test), (api_of_test_key, live)):
        assert_api_error(caller.get(session_url(other)), status=404, code="NOT_FOUND")
        not_found = {"sessionId": other, "status": "NOT_FOUND", "verified": False, "attemptsLeft": 0}
        assert_api_error(verify(caller, other, "123456"), status=404, code="NOT_FOUND", data=not_found)
        assert_api_error(cancel(caller, other), status=404, code="NOT_FOUND")
        with later(31):
            assert_api_error(resend(caller, other), status=404, code="NOT_FOUND")

    sessions = OtpSession.objects.order_by("is_test")
    assert [(s.is_test, s.status, s.attempts_used, s.resends) for s in sessions] == [
        (False, "PENDING", 0, 0),
        (True, "PENDING", 0, 0),
    ]
    assert not WrongCode.objects.exists()


def test_a_test_key_resends_cancels_and_reads_its_own_sessions(api_of_test_key):
    session_id = new_session(api_of_test_key)
    first_code = code_of(inbox(api_of_test_key).json()["data"][0]["text"])
    with later(31):
        resent = resend(api_of_test_key, session_id)
        assert resent.status_code == 200 and resent.json()["data"]["resends"] == 1
        texts = [entry["text"] for entry in inbox(api_of_test_key).json()["data"]]
        assert len(texts) == 2 and code_of(texts[1]) == first_code  # newest first: the resend's on top
        assert_api_error(
            verify(api_of_test_key, session_id, first_code),
            status=400,
            code="INVALID",
            data={"sessionId": session_id, "status": "INVALID", "verified": False, "attemptsLeft": 4},
        )
        assert verify(api_of_test_key, session_id, code_of(texts[0])).status_code == 200
    assert not locmem.outbox

    other = new_session(api_of_test_key, purpose="PASSWORD_RESET")
    canceled = cancel(api_of_test_key, other)
    assert canceled.status_code == 200 and canceled.json()["data"]["status"] == "CANCELED"


def test_the_inbox_answers_a_live_key_as_an_unknown_route_would(api):
    unknown_route = api.get("/v1/messaging/no-such-route", {"dest": DEST})
    answer = inbox(api)

    body = assert_api_error(answer, status=404, code="NOT_FOUND")
    assert body["message"] == unknown_route.json()["message"] and unknown_route.status_code == 404
    assert "X-RateLimit-Limit" not in answer  # refused before the key's rate is counted
    assert_api_error(api_client("").get(INBOX_URL, {"dest": DEST}), status=401, code="AUTHENTICATION_FAILED")


@pytest.mark.parametrize(
    "query",
    ["", "?dest=", "?dest=0202007745", "?dest=%2B233%2020%20200%207745", "?dest=%2B23320200774", "?dest=233202007745"],
)
def test_the_inbox_wants_one_destination_in_e164(api_of_test_key, query):
    body = assert_api_error(api_of_test_key.get(INBOX_URL + query), status=400, code="VALIDATION_ERROR")
    assert list(body["errors"]) == ["dest"]


def test_the_inbox_takes_a_plus_sign_left_unencoded_in_the_url(api_of_test_key):
    new_session(api_of_test_key)
    response = api_of_test_key.get(f"{INBOX_URL}?dest={DEST}")  # "+" in a query string reads as a space
    assert response.status_code == 200 and len(response.json()["data"]) == 1


def test_the_inbox_lists_one_destination_of_its_own_workspace_from_the_last_24_hours_newest_first(
    api_of_test_key, api, workspace
):
    with later(-25 * 3600):
        stale = new_session(api_of_test_key)
    with later(-40):
        session_id = new_session(api_of_test_key)
    resend(api_of_test_key, session_id)
    elsewhere = new_session(api_of_test_key, OTHER_DEST)
    new_session(api)  # a live SMS to the same number: never in the inbox
    other_workspace = WorkspaceFactory()
    SenderNameFactory(workspace=other_workspace, name="ZECKTA")
    new_session(api_client(issue_key(other_workspace, test=True)[1]))

    entries = inbox(api_of_test_key).json()["data"]

    assert [entry["sessionId"] for entry in entries] == [session_id, session_id]
    assert entries[0]["createdAt"] > entries[1]["createdAt"]
    assert {entry["dest"] for entry in entries} == {DEST}
    assert stale not in {entry["sessionId"] for entry in entries}  # kept until the purge, never shown
    assert [entry["sessionId"] for entry in inbox(api_of_test_key, OTHER_DEST).json()["data"]] == [elsewhere]

    assert TestInboxMessage.objects.count() == 5
    assert inbox_purge() == 1
    assert not TestInboxMessage.objects.filter(session__public_id=stale).exists()
    assert OtpSession.objects.filter(public_id=stale).exists()  # sessions follow the ordinary purge
    assert len(inbox(api_of_test_key).json()["data"]) == 2


def test_the_inbox_text_is_encrypted_at_rest(api_of_test_key):
    new_session(api_of_test_key)
    text = inbox(api_of_test_key).json()["data"][0]["text"]

    stored = TestInboxMessage.objects.get()
    raw = bytes(stored.encrypted_text)
    assert code_of(text).encode() not in raw and b"code" not in raw
    assert decrypt_inbox_text(raw) == text


def test_a_text_that_no_longer_decrypts_is_left_out_of_the_inbox(api_of_test_key):
    new_session(api_of_test_key)
    TestInboxMessage.objects.update(encrypted_text=Fernet(Fernet.generate_key()).encrypt(b"old"))
    new_session(api_of_test_key, purpose="PASSWORD_RESET")

    entries = inbox(api_of_test_key).json()["data"]

    assert len(entries) == 1 and TestInboxMessage.objects.count() == 2


def test_test_sms_and_wrong_codes_count_among_test_ones_only(api_of_test_key, api, workspace):
    Workspace.objects.filter(pk=workspace.pk).update(destination_limit=1, wrong_code_budget=1)
    new_session(api)
    test = new_session(api_of_test_key)  # the live SMS does not fill the test window

    assert_api_error(
        request_otp(api_of_test_key, DEST, purpose="PASSWORD_RESET"), status=429, code="DESTINATION_RATE_LIMITED"
    )
    assert_api_error(request_otp(api, DEST, purpose="PASSWORD_RESET"), status=429, code="DESTINATION_RATE_LIMITED")

    Workspace.objects.filter(pk=workspace.pk).update(destination_limit=10)
    local_caches_clear()  # the keys' cached workspace
    code = code_of(inbox(api_of_test_key).json()["data"][0]["text"])
    assert verify(api_of_test_key, test, wrong_code(code)).status_code == 400
    # The test guess budget is spent; the live one is not.
    refused = assert_api_error(
        request_otp(api_of_test_key, DEST, purpose="KYC_VERIFICATION"), status=429, code="DESTINATION_RATE_LIMITED"
    )
    assert "wrong codes" in refused["message"]
    assert request_otp(api, DEST, purpose="KYC_VERIFICATION").status_code == 200


def test_idempotency_keys_of_test_and_live_keys_do_not_collide(api_of_test_key, api):
    headers = {"HTTP_IDEMPOTENCY_KEY": "order-42"}
    body = {"dest": DEST, "src": "ZECKTA", "purpose": "LOGIN"}
    live = api.post("/v1/messaging/otp/request", body, format="json", **headers)
    test = api_of_test_key.post("/v1/messaging/otp/request", body, format="json", **headers)

    assert live.status_code == test.status_code == 200
    assert "Idempotent-Replayed" not in test
    assert live.json()["data"]["sessionId"] != test.json()["data"]["sessionId"]
    replay = api_of_test_key.post("/v1/messaging/otp/request", body, format="json", **headers)
    assert replay["Idempotent-Replayed"] == "true"
    assert replay.json()["data"]["sessionId"] == test.json()["data"]["sessionId"]


def test_a_wrong_test_code_is_counted_as_such(api_of_test_key):
    session_id = new_session(api_of_test_key)
    code = code_of(inbox(api_of_test_key).json()["data"][0]["text"])

    assert verify(api_of_test_key, session_id, wrong_code(code)).status_code == 400

    assert list(WrongCode.objects.values_list("is_test", flat=True)) == [True]


def test_a_test_key_is_a_key_like_any_other(workspace, sender):
    api_key, raw_key = issue_key(workspace, test=True)
    secret = raw_key[len("zk_test_") :]
    assert_api_error(
        api_client("zk_live_" + secret).get(INBOX_URL, {"dest": DEST}), status=401, code="AUTHENTICATION_FAILED"
    )
    assert api_client(raw_key).get(INBOX_URL, {"dest": DEST}).status_code == 200

    run_command("revoke_api_key", api_key.prefix)
    local_caches_clear()
    assert_api_error(api_client(raw_key).get(INBOX_URL, {"dest": DEST}), status=401, code="AUTHENTICATION_FAILED")


@pytest.mark.django_db(transaction=True)
def test_the_readme_example_signs_in_against_a_running_service(live_server, settings, workspace, sender):
    readme = (settings.BASE_DIR / "README.md").read_text()
    section = readme.split("## Testing your login flow end to end")[1]
    example = re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)
    _, raw_key = issue_key(workspace, test=True)

    exec(example.replace("http://127.0.0.1:8000", live_server.url).replace("zk_test_...", raw_key), {})  # noqa: S102

    assert OtpSession.objects.get().status == "APPROVED" and not locmem.outbox
