import threading
from collections import Counter

import pytest
import time_machine
from django.db import connection
from django.utils import timezone

from otp.models import IdempotencyRecord, OtpSession, SmsMessage
from otp.tests.helpers import REQUEST_URL
from senders.tests.factories import SenderNameFactory
from workspaces.models import Workspace
from workspaces.tests.factories import WorkspaceFactory, issue_key
from zeckta.testing import DEST, api_client, assert_api_error

BODY = {"dest": DEST, "src": "ZECKTA", "purpose": "LOGIN"}


def post(api, body: dict, key: str | None):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key is not None else {}
    return api.post(REQUEST_URL, body, format="json", **headers)


@pytest.mark.django_db
def test_the_same_key_and_body_replays_the_first_answer_and_sends_nothing(api, workspace):
    workspace.otp_reuse_enabled = False  # so a second real request would visibly send again
    workspace.save()
    first = post(api, BODY, "order-42")
    second = post(api, BODY, "order-42")

    assert first.status_code == second.status_code == 200
    assert "Idempotent-Replayed" not in first and second["Idempotent-Replayed"] == "true"
    strip = lambda r: {k: v for k, v in r.json().items() if k != "requestId"}  # noqa: E731
    assert strip(first) == strip(second)
    assert second.json()["requestId"] == second["X-Request-ID"] != first.json()["requestId"]
    assert OtpSession.objects.count() == 1 and SmsMessage.objects.count() == 1


@pytest.mark.django_db
def test_the_same_key_with_another_body_is_a_conflict(api):
    post(api, BODY, "k1")
    response = post(api, {**BODY, "purpose": "PASSWORD_RESET"}, "k1")
    assert response.status_code == 409 and response.json()["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert OtpSession.objects.count() == 1


@pytest.mark.django_db
def test_keys_are_scoped_per_workspace(api):
    other_ws = WorkspaceFactory()
    SenderNameFactory(workspace=other_ws, name="ZECKTA")
    other = api_client(issue_key(other_ws)[1])
    assert post(api, BODY, "shared").status_code == 200
    response = post(other, BODY, "shared")
    assert response.status_code == 200 and "Idempotent-Replayed" not in response
    assert OtpSession.objects.count() == 2


@pytest.mark.django_db
def test_a_key_expires_after_24_hours(api, workspace):
    workspace.otp_reuse_enabled = False
    workspace.save()
    post(api, BODY, "day")
    with time_machine.travel(timezone.now() + timezone.timedelta(hours=24, seconds=1)):
        response = post(api, BODY, "day")
    assert "Idempotent-Replayed" not in response and OtpSession.objects.count() == 2


@pytest.mark.django_db
def test_a_failed_request_does_not_burn_the_key(api, workspace):
    Workspace.objects.filter(pk=workspace.pk).update(is_prepaid=True, balance_units=0)
    assert post(api, BODY, "retry-me").status_code == 402
    assert not IdempotencyRecord.objects.exists()
    Workspace.objects.filter(pk=workspace.pk).update(balance_units=5)
    assert post(api, BODY, "retry-me").status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize("key", ["", "x" * 256, "naïve", "tab\there"])
def test_a_malformed_key_is_a_validation_error(api, key):
    response = post(api, BODY, key)
    assert response.status_code == 400 and "Idempotency-Key" in response.json()["errors"]
    assert not OtpSession.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_concurrent_duplicates_give_one_session():
    workspace = WorkspaceFactory(otp_reuse_enabled=False)
    SenderNameFactory(workspace=workspace, name="ZECKTA")
    raw = issue_key(workspace, tps=1000)[1]
    barrier = threading.Barrier(10)
    responses = []

    def call():
        try:
            barrier.wait()
            responses.append(post(api_client(raw), BODY, "same"))
        finally:
            connection.close()

    threads = [threading.Thread(target=call) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert [r.status_code for r in responses] == [200] * 10
    assert Counter(r.get("Idempotent-Replayed") for r in responses) == {None: 1, "true": 9}
    assert len({r.json()["data"]["sessionId"] for r in responses}) == 1
    assert OtpSession.objects.count() == 1 and SmsMessage.objects.count() == 1


@pytest.mark.django_db
def test_the_hourly_purge_drops_records_older_than_a_day(api):
    from otp.tasks import otp_sessions_purge_task

    post(api, BODY, "old")
    with time_machine.travel(timezone.now() + timezone.timedelta(hours=25)):
        post(api, {**BODY, "dest": "+233244123456"}, "new")
        otp_sessions_purge_task.apply()
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["new"]


@pytest.mark.django_db
def test_the_same_key_with_only_dest_changed_is_a_conflict_and_sends_nothing(api):
    first = post(api, BODY, "order-43")
    second = post(api, {**BODY, "dest": "+233244123456"}, "order-43")

    assert first.status_code == 200
    assert_api_error(second, status=409, code="IDEMPOTENCY_KEY_REUSED")
    assert list(OtpSession.objects.values_list("dest", flat=True)) == [DEST]
    assert SmsMessage.objects.count() == 1


@pytest.mark.django_db
def test_an_optional_field_sent_as_null_fingerprints_like_the_field_left_out(api, workspace):
    workspace.otp_reuse_enabled = False  # a second real request would send again
    workspace.save()
    first = post(api, {**BODY, "messageTemplate": None}, "order-44")
    second = post(api, BODY, "order-44")

    assert first.status_code == second.status_code == 200
    assert second["Idempotent-Replayed"] == "true"
    assert second.json()["data"] == first.json()["data"]
    assert OtpSession.objects.count() == 1
