"""OTP sessions and SMS messages in the admin: findable, read-only, and never a code digest or SMS text."""

import pytest
from django.urls import reverse

from otp.models import OtpSession, SmsMessage
from otp.services import otp_request
from workspaces.tests.factories import WorkspaceFactory
from zeckta.testing import DEST

OTHER_DEST = "+2348031234567"  # a valid Nigerian mobile number


@pytest.fixture
def issued(workspace, sender, raw_key, django_capture_on_commit_callbacks):
    """Two real sessions with their outbox rows, written by the service (the SMS tasks are not run)."""
    with django_capture_on_commit_callbacks(execute=False):
        otp_request(workspace=workspace, dest=DEST, src="ZECKTA", purpose="LOGIN")
        otp_request(workspace=workspace, dest=OTHER_DEST, src="ZECKTA", purpose="PASSWORD_RESET")
    session = OtpSession.objects.get(dest=DEST)
    sms = SmsMessage.objects.get(session=session)
    assert session.code_digest and sms.encrypted_text  # there is something to hide
    return session, sms


def assert_no_secrets(text: str, session: OtpSession, sms: SmsMessage, raw_key: str) -> None:
    assert session.code_digest not in text
    assert bytes(sms.encrypted_text).hex() not in text
    assert "digest" not in text.lower() and "encrypted" not in text.lower()
    assert raw_key not in text


def listed(client, url: str, query: dict) -> list:
    response = client.get(url, query)
    assert response.status_code == 200
    return list(response.context["cl"].result_list)


def test_session_pages_show_what_operators_need_and_no_secrets(admin_client, issued, raw_key):
    session, sms = issued
    changelist = admin_client.get(reverse("admin:otp_otpsession_changelist"))
    assert changelist.status_code == 200
    assert str(session.public_id) in changelist.text and DEST in changelist.text and "0/5" in changelist.text
    assert_no_secrets(changelist.text, session, sms, raw_key)

    change = admin_client.get(reverse("admin:otp_otpsession_change", args=[session.pk]))
    assert change.status_code == 200
    assert str(session.public_id) in change.text and str(sms.public_id) in change.text
    assert 'name="dest"' not in change.text and 'name="status"' not in change.text  # view only
    assert_no_secrets(change.text, session, sms, raw_key)


def test_sessions_are_found_by_destination_or_id_and_filtered(admin_client, issued, workspace):
    session, _ = issued
    url = reverse("admin:otp_otpsession_changelist")
    assert [s.dest for s in listed(admin_client, url, {"q": DEST})] == [DEST]
    assert [s.dest for s in listed(admin_client, url, {"q": "2348031"})] == [OTHER_DEST]
    assert listed(admin_client, url, {"q": str(session.public_id)}) == [session]
    assert listed(admin_client, url, {"q": "no-such-thing"}) == []
    assert [s.dest for s in listed(admin_client, url, {"purpose__exact": "PASSWORD_RESET"})] == [OTHER_DEST]
    assert len(listed(admin_client, url, {"status__exact": "PENDING"})) == 2
    assert listed(admin_client, url, {"status__exact": "APPROVED"}) == []
    assert len(listed(admin_client, url, {"workspace__id__exact": workspace.pk})) == 2
    assert listed(admin_client, url, {"workspace__id__exact": WorkspaceFactory().pk}) == []


def test_sms_pages_show_delivery_fields_and_no_text(admin_client, issued, raw_key):
    session, sms = issued
    changelist = admin_client.get(reverse("admin:otp_smsmessage_changelist"))
    assert changelist.status_code == 200
    assert str(sms.public_id) in changelist.text and DEST in changelist.text
    assert_no_secrets(changelist.text, session, sms, raw_key)

    change = admin_client.get(reverse("admin:otp_smsmessage_change", args=[sms.pk]))
    assert change.status_code == 200
    assert str(session.public_id) in change.text and "GSM-7" in change.text
    assert_no_secrets(change.text, session, sms, raw_key)


def test_sms_messages_are_found_by_destination_reference_or_session_and_filtered(admin_client, issued, workspace):
    session, sms = issued
    url = reverse("admin:otp_smsmessage_changelist")
    assert listed(admin_client, url, {"q": DEST}) == [sms]
    assert listed(admin_client, url, {"q": str(sms.public_id)}) == [sms]
    assert listed(admin_client, url, {"q": str(session.public_id)}) == [sms]
    assert len(listed(admin_client, url, {"status__exact": "queued"})) == 2
    assert listed(admin_client, url, {"status__exact": "sent"}) == []
    assert len(listed(admin_client, url, {"workspace__id__exact": workspace.pk})) == 2


def test_sessions_and_sms_cannot_be_added_changed_or_deleted(admin_client, issued):
    session, sms = issued
    for model, pk in (("otpsession", session.pk), ("smsmessage", sms.pk)):
        assert admin_client.get(reverse(f"admin:otp_{model}_add")).status_code == 403
        assert (
            admin_client.post(reverse(f"admin:otp_{model}_change", args=[pk]), {"status": "APPROVED"}).status_code
            == 403
        )
        assert admin_client.post(reverse(f"admin:otp_{model}_delete", args=[pk]), {"post": "yes"}).status_code == 403
    session.refresh_from_db()
    assert session.status == "PENDING"
    assert OtpSession.objects.count() == 2 and SmsMessage.objects.count() == 2
