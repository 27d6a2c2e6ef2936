"""The fraud guard on the request path (API.md section 13): the velocity rules decided in Redis before
either version of the request rules, the block check on requests and resends, the approval hook after a
verify, and what each decision leaves behind (the block's record, its event, the metrics).

Real PostgreSQL and Redis; races with threads behind a Barrier, each with its own connection.
"""

import time
from collections import Counter
from datetime import timedelta

import pytest
import redis
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from fraud.guard import block_key, blocks_key, blocks_mirror
from fraud.models import FraudBlock, SafeListEntry
from fraud.tests.factories import FraudBlockFactory
from otp.fraudrules import country_history_refresh
from otp.models import OtpSession, SmsMessage
from otp.tasks import otp_sessions_purge_task
from otp.testmode import reviewer_number_add
from otp.tests.factories import SmsMessageFactory
from otp.tests.helpers import deliver_and_read_code, later, request_otp, resend, verify
from otp.tests.test_observability import Moves, scrape
from senders.tests.factories import SenderNameFactory
from webhooks.delivery import webhook_deliver
from webhooks.models import WebhookDelivery
from workspaces.models import Workspace
from workspaces.tests.factories import WorkspaceFactory, issue_key
from zeckta.localcache import local_caches_clear
from zeckta.testing import api_client, assert_api_error, free_port, run_together

RANGE = "+233204123"  # API.md's own example: +233204123000 to +233204123999
BLOCKED_MESSAGE = "The service cannot send a code to this number now."


def number(index: int, range_: str = RANGE) -> str:
    return f"{range_}{index:03d}"


def spread(count: int) -> list[str]:
    """`count` Ghanaian mobiles, ten to a range: many numbers of one country, no range past its velocity."""
    return [f"+23324{index // 10:04d}{index % 10:03d}" for index in range(count)]


def set_mode(workspace: Workspace, mode: str) -> None:
    Workspace.objects.filter(pk=workspace.pk).update(fraud_guard_mode=mode)


def assert_blocked(response) -> None:
    body = assert_api_error(response, status=403, code="DESTINATION_BLOCKED")
    assert body["message"] == BLOCKED_MESSAGE  # no rule, no end time


@pytest.fixture
def api(workspace, sender):
    """A live key of `workspace` fast enough for the dozens of requests a rule needs (the key's own rate is
    not what these tests are about)."""
    return api_client(issue_key(workspace, tps=1000)[1])


def statuses(responses) -> Counter:
    return Counter(response.status_code for response in responses)


# --- Races ---------------------------------------------------------------------------------------


@pytest.fixture
def race_tenant(transactional_db):
    workspace = WorkspaceFactory(name="Pump", slug="pump")
    SenderNameFactory(workspace=workspace, name="ZECKTA")
    return workspace, issue_key(workspace, tps=1000)[1]  # the per-key rate is not what these tests race


@pytest.mark.usefixtures("otp_path")
def test_twenty_concurrent_requests_to_new_numbers_of_one_range_send_ten_sms(race_tenant):
    workspace, raw_key = race_tenant

    responses = run_together(20, lambda i: request_otp(api_client(raw_key), number(i)))

    assert statuses(responses) == {200: 10, 403: 10}
    for response in responses:
        if response.status_code == 403:
            assert_blocked(response)
    assert SmsMessage.objects.count() == 10 and OtpSession.objects.count() == 10
    [block] = FraudBlock.objects.all()
    assert (block.workspace_id, block.scope, block.value, block.rule, block.mode) == (
        workspace.pk,
        "range",
        RANGE,
        "range_velocity",
        "enforce",
    )
    assert block.evidence == {"sessions": 11, "converted": 0, "numbers": 11}  # the 11th tripped it
    assert block.ends_at - block.created_at == timedelta(hours=1) and block.lifted_at is None


@pytest.mark.usefixtures("otp_path")
def test_an_approval_of_one_of_the_first_ten_sessions_keeps_the_range_open(race_tenant):
    workspace, raw_key = race_tenant
    api = api_client(raw_key)
    first = [request_otp(api, number(i)).json()["data"]["sessionId"] for i in range(10)]
    assert verify(api, first[3], deliver_and_read_code(first[3])).json()["data"]["status"] == "APPROVED"

    responses = run_together(10, lambda i: request_otp(api_client(raw_key), number(10 + i)))

    assert statuses(responses) == {200: 10}
    assert SmsMessage.objects.count() == 20 and not FraudBlock.objects.exists()


# --- Who counts ----------------------------------------------------------------------------------


def test_another_workspaces_traffic_never_counts(api, workspace):
    other = WorkspaceFactory(name="Other", slug="other")
    SenderNameFactory(workspace=other, name="ZECKTA")
    other_api = api_client(issue_key(other, tps=1000)[1])

    assert [request_otp(other_api, number(i)).status_code for i in range(10)] == [200] * 10
    assert [request_otp(api, number(10 + i)).status_code for i in range(10)] == [200] * 10

    assert not FraudBlock.objects.exists()
    assert_blocked(request_otp(api, number(20)))  # each workspace's own eleventh
    assert FraudBlock.objects.get().workspace == workspace


def test_test_keys_and_reviewer_numbers_never_count_and_are_never_refused(api, workspace, sender):
    test_api = api_client(issue_key(workspace, test=True, tps=1000)[1])
    for index in range(12):
        reviewer_number_add(workspace=workspace, dest=number(900 + index), code="13579")

    assert [request_otp(test_api, number(i)).status_code for i in range(15)] == [200] * 15
    assert [request_otp(api, number(900 + i)).status_code for i in range(12)] == [200] * 12
    assert [request_otp(api, number(100 + i)).status_code for i in range(10)] == [200] * 10
    assert not FraudBlock.objects.exists()

    assert_blocked(request_otp(api, number(200)))  # the 11th live number
    assert request_otp(test_api, number(300)).status_code == 200
    assert request_otp(api, number(911), purpose="PASSWORD_RESET").status_code == 200  # a reviewer number


def test_a_safe_listed_prefix_is_never_counted_nor_refused(api, workspace):
    SafeListEntry.objects.create(workspace=workspace, prefix="+23320412", note="our call centre")

    assert [request_otp(api, number(i)).status_code for i in range(20)] == [200] * 20

    assert not FraudBlock.objects.exists()
    FraudBlock.objects.create(
        workspace=workspace,
        scope="country",
        value="GH",
        rule="country_conversion",
        mode="enforce",
        created_at=timezone.now(),
        ends_at=timezone.now() + timedelta(hours=1),
    )
    assert blocks_mirror(now=timezone.now()) == 1
    assert request_otp(api, number(20)).status_code == 200  # safe-listed: even a blocked country's
    assert_blocked(request_otp(api, "+233244000001"))  # not safe-listed


def test_with_the_guard_off_nothing_counts_and_redis_is_not_asked(api, workspace, settings):
    set_mode(workspace, "off")
    settings.RATE_LIMIT_BACKEND = "locmem"
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nobody listens there

    assert [request_otp(api, number(i)).status_code for i in range(20)] == [200] * 20
    assert not FraudBlock.objects.exists()


def test_a_request_refused_by_another_limit_sends_nothing_and_is_not_counted(api, workspace):
    Workspace.objects.filter(pk=workspace.pk).update(daily_sms_cap=1)
    assert request_otp(api, number(0)).status_code == 200

    refused = [request_otp(api, number(index)) for index in range(1, 15)]

    assert {response.json()["code"] for response in refused} == {"WORKSPACE_QUOTA_EXCEEDED"}  # never blocked
    assert not FraudBlock.objects.exists()
    Workspace.objects.filter(pk=workspace.pk).update(daily_sms_cap=0)
    local_caches_clear()  # the key's cached workspace
    assert [request_otp(api, number(index)).status_code for index in range(20, 29)] == [200] * 9
    assert_blocked(request_otp(api, number(29)))  # the 11th number sent to, not the 25th asked for


def test_a_number_refused_by_another_limit_counts_once_it_is_sent_to(api, workspace, settings):
    settings.LOCAL_CACHE_SECONDS = 0.2
    Workspace.objects.filter(pk=workspace.pk).update(daily_sms_cap=1)
    assert request_otp(api, number(0)).status_code == 200
    assert [request_otp(api, number(index)).json()["code"] for index in range(1, 10)] == [
        "WORKSPACE_QUOTA_EXCEEDED"
    ] * 9
    Workspace.objects.filter(pk=workspace.pk).update(daily_sms_cap=0)
    time.sleep(0.3)  # the key's cached workspace expires (what this process knows of the guard's counts stays)

    # Taken out of the counts when refused, so asked about again (not passed as numbers already counted).
    assert [request_otp(api, number(index)).status_code for index in range(1, 10)] == [200] * 9
    assert_blocked(request_otp(api, number(10)))


# --- Numbers already counted: no round trip ------------------------------------------------------


def test_a_reused_request_of_a_counted_number_asks_redis_nothing(api, workspace, settings):
    set_mode(workspace, "shadow")
    first = request_otp(api, number(0)).json()["data"]
    settings.RATE_LIMIT_BACKEND = "locmem"  # the key's rate is not what is unreachable here
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"

    again = request_otp(api, number(0))

    assert again.status_code == 200 and again.json()["data"]["sessionId"] == first["sessionId"]
    assert_api_error(request_otp(api, number(1)), status=503, code="SERVICE_UNAVAILABLE")  # a new number asks


def test_a_counted_number_in_a_range_blocked_since_is_refused_even_when_its_session_is_reused(
    api, workspace, django_capture_on_commit_callbacks
):
    first = request_otp(api, number(0)).json()["data"]["sessionId"]
    for index in range(1, 10):
        assert request_otp(api, number(index)).status_code == 200
    assert_blocked(request_otp(api, number(10)))

    assert_blocked(request_otp(api, number(0)))  # this process knows the block it set at once

    block = FraudBlock.objects.get()
    with django_capture_on_commit_callbacks(execute=True):
        assert api.delete(f"/v1/messaging/fraud/blocks/{block.public_id}").status_code == 200
    again = request_otp(api, number(0))
    assert again.status_code == 200 and again.json()["data"]["sessionId"] == first


def test_a_block_set_by_another_process_reaches_a_counted_number_within_the_cache_time(api, workspace, settings):
    settings.LOCAL_CACHE_SECONDS = 0.2
    assert request_otp(api, number(0)).status_code == 200
    assert request_otp(api, number(0)).status_code == 200  # reused: this process read the workspace's blocks
    now = timezone.now()
    FraudBlock.objects.create(
        workspace=workspace,
        scope="range",
        value=RANGE,
        rule="range_conversion",
        mode="enforce",
        created_at=now,
        ends_at=now + timedelta(hours=24),
    )
    # Beat's mirror in another process writes it into Redis; this process is not told.
    ends = int(now.timestamp() * 1000) + 86_400_000
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.set(block_key(workspace.pk, "enforce", "range", RANGE), ends, px=86_400_000)
    client.hset(blocks_key(workspace.pk), f"enforce:range:{RANGE}", ends)

    assert request_otp(api, number(0)).status_code == 200  # within LOCAL_CACHE_SECONDS: not known yet
    time.sleep(0.3)
    assert_blocked(request_otp(api, number(0)))


# --- Shadow --------------------------------------------------------------------------------------


def test_shadow_records_the_same_decision_and_refuses_nothing(api, workspace):
    set_mode(workspace, "shadow")

    assert [request_otp(api, number(i)).status_code for i in range(20)] == [200] * 20

    assert SmsMessage.objects.count() == 20
    [block] = FraudBlock.objects.all()
    assert (block.scope, block.value, block.rule, block.mode) == ("range", RANGE, "range_velocity", "shadow")
    assert block.evidence == {"sessions": 11, "converted": 0, "numbers": 11}


# --- Blocks ----------------------------------------------------------------------------------------


@pytest.mark.usefixtures("otp_path")
def test_a_block_refuses_a_resend_but_never_a_verify(api, workspace):
    sessions = [request_otp(api, number(i)).json()["data"]["sessionId"] for i in range(10)]
    assert_blocked(request_otp(api, number(10)))
    code = deliver_and_read_code(sessions[0])

    with later(31):
        assert_blocked(resend(api, sessions[0]))
        assert SmsMessage.objects.filter(session__public_id=sessions[0]).count() == 1
        response = verify(api, sessions[0], code)

    assert response.status_code == 200 and response.json()["data"]["status"] == "APPROVED"


def test_a_request_with_an_idempotency_key_that_trips_a_rule_keeps_the_blocks_record(api, workspace):
    for index in range(10):
        assert request_otp(api, number(index)).status_code == 200

    response = api.post(
        "/v1/messaging/otp/request",
        {"dest": number(10), "src": "ZECKTA", "purpose": "LOGIN"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="eleventh",
    )

    assert_blocked(response)
    [block] = FraudBlock.objects.all()  # rolled back with the key's transaction, then recorded again
    assert block.rule == "range_velocity" and block.evidence["numbers"] == 11


def test_redis_down_refuses_live_sends_with_503_and_never_a_verify(api, workspace, settings):
    session_id = request_otp(api, number(0)).json()["data"]["sessionId"]
    code = deliver_and_read_code(session_id)
    settings.RATE_LIMIT_BACKEND = "locmem"  # the key's rate is not what is down here
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"

    assert_api_error(request_otp(api, number(1)), status=503, code="SERVICE_UNAVAILABLE")

    assert not OtpSession.objects.filter(dest=number(1)).exists()
    assert verify(api, session_id, code).json()["data"]["status"] == "APPROVED"


# --- country_velocity ----------------------------------------------------------------------------------


def test_country_velocity_trips_at_the_51st_number_of_a_country_new_to_the_workspace(api, workspace):
    numbers = spread(51)
    country_history_refresh(now=timezone.now())  # beat: the workspace has sent nowhere before

    assert [request_otp(api, dest).status_code for dest in numbers[:50]] == [200] * 50
    assert_blocked(request_otp(api, numbers[50]))

    [block] = FraudBlock.objects.all()
    assert (block.scope, block.value, block.rule, block.mode) == ("country", "GH", "country_velocity", "enforce")
    assert block.evidence == {"sessions": 51, "converted": 0, "numbers": 51}
    assert_blocked(request_otp(api, "+233201234567"))  # any Ghanaian number now


def test_country_velocity_leaves_a_country_the_workspace_has_history_in_alone(api, workspace, sender):
    long_ago = timezone.now() - timedelta(days=1)
    for index in range(50):  # the default history: 50 OTP SMS in the 7 days before
        SmsMessageFactory(
            session__sender_name=sender, session__dest=f"+233270000{index:03d}", session__created_at=long_ago
        )
    country_history_refresh(now=timezone.now())

    assert [request_otp(api, dest).status_code for dest in spread(60)] == [200] * 60
    assert not FraudBlock.objects.exists()


def test_country_velocity_judges_nothing_until_beat_has_written_the_history(api, workspace):
    assert [request_otp(api, dest).status_code for dest in spread(60)] == [200] * 60
    assert not FraudBlock.objects.exists()


# --- What a decision leaves behind ---------------------------------------------------------------------


def test_a_block_reaches_a_real_receiver_as_a_signed_fraud_blocked_event(api, workspace, receiver):
    created = api.post("/v1/messaging/webhooks", {"url": receiver.url, "events": ["fraud.blocked"]}, format="json")
    secret = created.json()["data"]["secret"]
    for index in range(10):
        request_otp(api, number(index))
    assert_blocked(request_otp(api, number(10)))

    [delivery] = WebhookDelivery.objects.filter(event_type="fraud.blocked")
    assert webhook_deliver(delivery_id=delivery.pk) == "delivered"

    [received] = receiver.requests
    payload = Webhook(secret).verify(received.body, received.headers)
    block = FraudBlock.objects.get()
    assert payload["type"] == "fraud.blocked"
    assert payload["data"] == {
        "blockId": str(block.public_id),
        "scope": "range",
        "value": RANGE,
        "rule": "range_velocity",
        "mode": "enforce",
        "createdAt": block.created_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "endsAt": block.ends_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "liftedAt": None,
        "evidence": {"sessions": 11, "converted": 0, "numbers": 11},
    }


def test_decisions_and_refusals_are_counted(api, workspace, client, django_capture_on_commit_callbacks):
    before = scrape(client)
    assert before[("zeckta_fraud_decisions_total", (("mode", "shadow"), ("rule", "country_conversion")))] == 0
    for index in range(10):
        request_otp(api, number(index))

    with django_capture_on_commit_callbacks(execute=True):
        assert_blocked(request_otp(api, number(10)))
    assert_blocked(request_otp(api, number(11)))

    expected = {
        'zeckta_fraud_decisions_total{rule="range_velocity",mode="enforce"}': 1,
        "zeckta_fraud_refused_total": 2,
        'zeckta_otp_requests_total{outcome="DESTINATION_BLOCKED"}': 2,
        'zeckta_otp_requests_total{outcome="new"}': 10,
    }
    assert Moves(before, scrape(client)).of(expected) == expected


def test_the_hourly_purge_takes_blocks_past_their_retention_too(workspace):
    long_ago = timezone.now() - timedelta(days=200)
    FraudBlockFactory(workspace=workspace, created_at=long_ago, ends_at=long_ago + timedelta(hours=1))
    FraudBlockFactory(workspace=workspace)  # active

    otp_sessions_purge_task.apply().get()  # its count also holds the day partitions it dropped (PostgreSQL)

    assert FraudBlock.objects.get().ends_at > timezone.now()  # the old one is gone, the active one stays
