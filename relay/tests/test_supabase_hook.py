"""The Supabase Auth Send SMS hook (API.md section 14): hooks managed under /v1/messaging/hooks/supabase, and
POST /hooks/supabase/{hookId} called as Supabase calls it: the payload of Supabase's documentation, signed
with the `standardwebhooks` library as Supabase signs (the secret's `v1,whsec_` stripped, the rest its key)."""

import json
import logging
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from fraud.models import number_range
from fraud.services import fraud_block_record
from otp.delivery import sms_deliver, sms_drain_nudge
from otp.models import IdempotencyRecord, SmsMessage, TestInboxMessage
from otp.templating import default_template
from relay.models import SupabaseHook
from senders.gateways import locmem
from senders.tests.factories import SenderNameFactory
from workspaces.tests.factories import WorkspaceFactory, issue_key
from zeckta import sms_text
from zeckta.testing import DEST, api_client, assert_api_error

pytestmark = pytest.mark.django_db

HOOKS_URL = "/v1/messaging/hooks/supabase"
CODE = "561166"
PHONE_WITHOUT_PLUS = DEST.removeprefix("+")


def documented_payload(*, phone: str = PHONE_WITHOUT_PLUS, otp: str = CODE) -> dict:
    """Supabase's documentation example of the Send SMS hook's input, with a real number of ours."""
    return {
        "user": {
            "id": "6481a5c1-3d37-4a56-9f6a-bee08c554965",
            "aud": "authenticated",
            "role": "authenticated",
            "email": "",
            "phone": phone,
            "phone_confirmed_at": "2024-05-13T11:52:48.157306Z",
            "confirmation_sent_at": "2024-05-14T12:31:52.824573Z",
            "confirmed_at": "2024-05-13T11:52:48.157306Z",
            "phone_change_sent_at": "2024-05-13T11:47:02.183064Z",
            "last_sign_in_at": "2024-05-13T11:52:48.162518Z",
            "app_metadata": {"provider": "phone", "providers": ["phone"]},
            "user_metadata": {},
            "identities": [
                {
                    "identity_id": "3be5e552-65aa-41d9-9db9-2a502f845459",
                    "id": "6481a5c1-3d37-4a56-9f6a-bee08c554965",
                    "user_id": "6481a5c1-3d37-4a56-9f6a-bee08c554965",
                    "identity_data": {
                        "email_verified": False,
                        "phone": "+1612341244428",
                        "phone_verified": True,
                        "sub": "6481a5c1-3d37-4a56-9f6a-bee08c554965",
                    },
                    "provider": "phone",
                    "last_sign_in_at": "2024-05-13T11:52:48.155562Z",
                    "created_at": "2024-05-13T11:52:48.155599Z",
                    "updated_at": "2024-05-13T11:52:48.159391Z",
                }
            ],
            "created_at": "2024-05-13T11:45:33.7738Z",
            "updated_at": "2024-05-14T12:31:52.82475Z",
            "is_anonymous": False,
        },
        "sms": {"otp": otp},
    }


def supabase_call(client, url: str, secret: str, payload: dict, *, webhook_id: str | None = None, at=None):
    """POSTs `payload` as Supabase Auth does: Standard Webhooks headers, signed with the secret's key."""
    body = json.dumps(payload)
    webhook_id = webhook_id or str(uuid.uuid4())
    at = at or datetime.now(tz=UTC)
    signature = Webhook(secret.removeprefix("v1,whsec_")).sign(msg_id=webhook_id, timestamp=at, data=body)
    return client.post(
        url,
        body,
        content_type="application/json",
        HTTP_WEBHOOK_ID=webhook_id,
        HTTP_WEBHOOK_TIMESTAMP=str(int(at.timestamp())),
        HTTP_WEBHOOK_SIGNATURE=signature,
    )


@pytest.fixture
def hook(api, settings):
    """A hook made through the API: (its URL path, its secret)."""
    settings.PUBLIC_URL = "https://otp.example.com"
    data = api.post(HOOKS_URL, {}, format="json").json()["data"]
    return data["url"].removeprefix(settings.PUBLIC_URL), data["secret"]


def assert_supabase_refusal(response, status: int) -> str:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"} and body["error"]["http_code"] == status
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]["message"]


# --- managing hooks ---------------------------------------------------------------------------------------


def test_a_hook_is_created_with_its_url_and_a_secret_shown_once_and_stored_encrypted(api, workspace, settings):
    settings.PUBLIC_URL = "https://otp.example.com"

    response = api.post(HOOKS_URL, {}, format="json")

    assert response.status_code == 201
    data = response.json()["data"]
    assert set(data) == {"hookId", "url", "secret", "createdAt"}
    assert data["url"] == f"https://otp.example.com/hooks/supabase/{data['hookId']}"
    assert data["secret"].startswith("v1,whsec_")
    assert len(Webhook(data["secret"].removeprefix("v1,whsec_"))._whsecret) == 32
    stored = SupabaseHook.objects.get()
    assert (str(stored.public_id), stored.workspace, stored.is_test) == (data["hookId"], workspace, False)
    assert data["secret"].removeprefix("v1,whsec_").encode() not in bytes(stored.encrypted_secret)
    listed = api.get(HOOKS_URL).json()["data"]
    one = api.get(f"{HOOKS_URL}/{data['hookId']}").json()["data"]
    assert listed == [one] and "secret" not in one and one["url"] == data["url"]


def test_hooks_are_the_workspaces_own_and_of_the_keys_mode(api, workspace):
    hook_id = api.post(HOOKS_URL, {}, format="json").json()["data"]["hookId"]
    other_api = api_client(issue_key(WorkspaceFactory(), name="k")[1])
    test_api = api_client(issue_key(workspace, name="t", test=True)[1])

    for client in (other_api, test_api):
        assert_api_error(client.get(f"{HOOKS_URL}/{hook_id}"), status=404, code="NOT_FOUND")
        assert_api_error(client.delete(f"{HOOKS_URL}/{hook_id}"), status=404, code="NOT_FOUND")
        assert client.get(HOOKS_URL).json()["data"] == []
    assert SupabaseHook.objects.count() == 1


def test_a_deleted_hook_sends_nothing(api, client, hook):
    path, secret = hook
    hook_id = path.rsplit("/", 1)[1]

    assert api.delete(f"{HOOKS_URL}/{hook_id}").status_code == 200

    assert not SupabaseHook.objects.exists()
    assert_supabase_refusal(supabase_call(client, path, secret, documented_payload()), 404)
    assert not SmsMessage.objects.exists()


# --- Supabase's calls -----------------------------------------------------------------------------------


def test_the_documented_payload_without_the_plus_sends_the_login_text_from_the_default_sender(
    api, client, hook, workspace, caplog, django_capture_on_commit_callbacks
):
    SenderNameFactory(workspace=workspace, name="ACME", is_default=True)
    path, secret = hook
    caplog.set_level(logging.DEBUG)

    with django_capture_on_commit_callbacks(execute=False) as published:
        response = supabase_call(client, path, secret, documented_payload())

    assert response.status_code == 200 and response.json() == {}
    message = SmsMessage.objects.get()
    assert (message.session_id, message.to, message.src, message.purpose) == (None, DEST, "ACME", "LOGIN")
    # The code is in the text only, and the text is encrypted; nothing else holds it.
    assert CODE.encode() not in bytes(message.encrypted_text)
    assert CODE not in json.dumps(list(IdempotencyRecord.objects.values("key", "fingerprint", "response_body")))
    assert published == [sms_drain_nudge]  # what commit runs: a nudge to the drainer, with no argument at all
    assert CODE not in caplog.text

    assert sms_deliver(message_id=message.pk) == "sent"

    (sent,) = locmem.outbox
    expected = sms_text.render(default_template("LOGIN"), code=CODE, validity_seconds=workspace.otp_validity_seconds)
    assert (sent.to, sent.src, sent.text) == (DEST, "ACME", expected) and CODE in sent.text


def test_the_phone_with_its_plus_and_the_workspaces_own_login_text(client, hook, workspace):
    workspace.default_message_template = "Acme sign-in: <OTP>"
    workspace.save(update_fields=["default_message_template"])
    path, secret = hook

    assert supabase_call(client, path, secret, documented_payload(phone=DEST)).status_code == 200

    message = SmsMessage.objects.get()
    assert message.to == DEST and message.src == "ZECKTA"  # the first approved name, none being marked
    sms_deliver(message_id=message.pk)
    assert locmem.outbox[0].text == f"Acme sign-in: {CODE}"


def test_the_login_text_is_in_the_workspaces_language(client, hook, workspace):
    workspace.locale = "sw"
    workspace.save(update_fields=["locale"])
    path, secret = hook
    assert supabase_call(client, path, secret, documented_payload(phone=DEST)).status_code == 200
    sms_deliver(message_id=SmsMessage.objects.get().pk)
    expected = sms_text.render(
        default_template("LOGIN", "sw"), code=CODE, validity_seconds=workspace.otp_validity_seconds
    )
    assert locmem.outbox[0].text == expected and expected.startswith(f"Msimbo wako wa kuingia ni {CODE}.")


def test_a_replayed_webhook_id_sends_nothing_again_and_gets_the_first_answer(client, hook):
    path, secret = hook
    webhook_id = str(uuid.uuid4())

    first = supabase_call(client, path, secret, documented_payload(), webhook_id=webhook_id)
    again = supabase_call(client, path, secret, documented_payload(otp="999999"), webhook_id=webhook_id)

    assert (first.status_code, first.json()) == (again.status_code, again.json()) == (200, {})
    assert SmsMessage.objects.count() == 1
    assert supabase_call(client, path, secret, documented_payload()).status_code == 200  # a new id sends
    assert SmsMessage.objects.count() == 2


def test_a_stale_timestamp_is_refused(client, hook):
    path, secret = hook

    response = supabase_call(client, path, secret, documented_payload(), at=datetime.now(tz=UTC) - timedelta(minutes=6))

    assert_supabase_refusal(response, 401)
    assert not SmsMessage.objects.exists() and not IdempotencyRecord.objects.exists()


def test_a_wrong_secret_or_a_changed_body_is_refused(client, hook):
    path, secret = hook
    other_secret = "v1,whsec_" + "A" * 43 + "="

    wrong = supabase_call(client, path, other_secret, documented_payload())
    unsigned = client.post(path, json.dumps(documented_payload()), content_type="application/json")

    assert_supabase_refusal(wrong, 401)
    assert_supabase_refusal(unsigned, 401)
    assert not SmsMessage.objects.exists()


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        (documented_payload(otp="56 166"), "sms.otp"),
        (documented_payload(phone="+1333363128"), "user.phone"),  # the documentation's own: not a valid number
        ({"sms": {"otp": CODE}}, "user.phone"),
    ],
)
def test_a_bad_payload_is_400_and_never_echoes_the_code(client, hook, payload, fragment):
    path, secret = hook

    message = assert_supabase_refusal(supabase_call(client, path, secret, payload), 400)

    assert fragment in message and CODE not in message
    assert not SmsMessage.objects.exists()


def test_a_send_limit_is_429_with_retry_after_and_a_retry_is_tried_afresh(client, hook, workspace):
    workspace.destination_limit = 1
    workspace.save(update_fields=["destination_limit"])
    path, secret = hook
    assert supabase_call(client, path, secret, documented_payload()).status_code == 200
    webhook_id = str(uuid.uuid4())

    refused = supabase_call(client, path, secret, documented_payload(), webhook_id=webhook_id)

    assert_supabase_refusal(refused, 429)
    assert int(refused["Retry-After"]) > 0
    assert SmsMessage.objects.count() == 1
    # A refusal is not remembered: Supabase's retry with the same id is a new try (refused again here).
    assert_supabase_refusal(supabase_call(client, path, secret, documented_payload(), webhook_id=webhook_id), 429)


def test_a_workspace_without_an_approved_sender_gets_400(client, hook, sender):
    sender.status = "PENDING"
    sender.approved_at = None
    sender.save(update_fields=["status", "approved_at"])
    path, secret = hook

    assert "sender" in assert_supabase_refusal(supabase_call(client, path, secret, documented_payload()), 400)
    assert not SmsMessage.objects.exists()


def test_a_suspended_workspace_gets_403(client, hook, workspace):
    path, secret = hook
    workspace.is_active = False
    workspace.save(update_fields=["is_active"])

    assert_supabase_refusal(supabase_call(client, path, secret, documented_payload()), 403)
    assert not SmsMessage.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_fraud_guard_block_is_403_and_nothing_is_sent(client, hook, workspace):
    path, secret = hook
    fraud_block_record(
        workspace=workspace,
        scope="range",
        value=number_range(DEST),
        rule="range_conversion",
        mode="enforce",
        evidence={"sessions": 20, "converted": 0, "numbers": 20},
        now=timezone.now(),
    )

    message = assert_supabase_refusal(supabase_call(client, path, secret, documented_payload()), 403)
    assert CODE not in message
    assert not SmsMessage.objects.exists()


def test_a_prepaid_workspace_that_cannot_pay_gets_402(client, hook, workspace):
    workspace.is_prepaid, workspace.balance_units = True, 0
    workspace.save(update_fields=["is_prepaid", "balance_units"])
    path, secret = hook

    assert_supabase_refusal(supabase_call(client, path, secret, documented_payload()), 402)
    assert not SmsMessage.objects.exists()


def test_the_hook_needs_no_relay_switch(client, hook, workspace):
    # It sends the workspace's own LOGIN text only, never a text of the caller's.
    assert workspace.relay_enabled is False
    path, secret = hook

    assert supabase_call(client, path, secret, documented_payload()).status_code == 200


def test_a_test_hook_sends_to_the_test_inbox(client, workspace, sender, settings):
    settings.PUBLIC_URL = "https://otp.example.com"
    test_api = api_client(issue_key(workspace, name="t", test=True)[1])
    data = test_api.post(HOOKS_URL, {}, format="json").json()["data"]

    response = supabase_call(
        client, data["url"].removeprefix(settings.PUBLIC_URL), data["secret"], documented_payload()
    )

    assert response.status_code == 200
    message = SmsMessage.objects.get()
    assert (message.is_test, message.status) == (True, "delivered") and locmem.outbox == []
    assert TestInboxMessage.objects.get().dest == DEST
    inbox = test_api.get("/v1/messaging/test-inbox", {"dest": DEST}).json()["data"]
    assert CODE in inbox[0]["text"]


def test_other_methods_are_405_in_supabases_shape(client, hook):
    path, _ = hook

    assert_supabase_refusal(client.get(path), 405)


def test_staff_make_a_name_the_default_sender_in_the_admin(admin_client, client, hook, workspace, sender):
    acme = SenderNameFactory(workspace=workspace, name="ACME")
    pending = SenderNameFactory(workspace=workspace, name="LATER", status="PENDING", approved_at=None)
    url = reverse("admin:senders_sendername_changelist")
    path, secret = hook

    refused = admin_client.post(url, {"action": "make_default", "_selected_action": [pending.pk]}, follow=True)
    made = admin_client.post(url, {"action": "make_default", "_selected_action": [acme.pk]}, follow=True)
    again = admin_client.post(url, {"action": "make_default", "_selected_action": [sender.pk]}, follow=True)

    assert "Only an approved sender name can be the default." in refused.text
    assert "ACME is now the default sender" in made.text and "ZECKTA is now the default sender" in again.text
    assert [s.name for s in type(sender).objects.filter(workspace=workspace, is_default=True)] == ["ZECKTA"]
    assert supabase_call(client, path, secret, documented_payload()).status_code == 200
    assert SmsMessage.objects.get().src == "ZECKTA"
