"""The blocks API (API.md section 13): GET lists the workspace's blocks and shadow decisions of the last 30 days,
DELETE lifts one. Every call is scoped to the caller's workspace; a lift is a change of live configuration."""

import re
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from fraud.errors import FraudBlockNotFound
from fraud.models import FraudBlock
from fraud.tests.factories import FraudBlockFactory
from workspaces.models import AuditEvent
from workspaces.tests.factories import WorkspaceFactory, issue_key
from workspaces.tests.helpers import events, the_event
from zeckta.api.fields import iso
from zeckta.api.pages import MAX_PAGE_SIZE
from zeckta.testing import api_client, assert_api_error, run_together

pytestmark = pytest.mark.django_db

URL = "/v1/messaging/fraud/blocks"
ISO_RE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
FIELDS = {"blockId", "scope", "value", "rule", "mode", "createdAt", "endsAt", "liftedAt", "evidence"}
LIFTED = "fraud_block.lifted"


def block_url(block_id) -> str:
    return f"{URL}/{block_id}"


def ago(**delta: float):
    return timezone.now() - timedelta(**delta)


def without_request_id(response) -> bytes:
    return response.content.replace(response.json()["requestId"].encode(), b"")


@pytest.fixture
def other(db):
    return WorkspaceFactory(name="Other", slug="other")


@pytest.fixture
def api_of_test_key(workspace):
    return api_client(issue_key(workspace, name="ci", test=True)[1])


# --- GET the list ------------------------------------------------------------------------------


def test_it_lists_the_workspace_blocks_and_shadow_decisions_newest_first_with_their_exact_shape(api, workspace):
    country = FraudBlockFactory(
        workspace=workspace,
        scope="country",
        value="GH",
        rule="country_velocity",
        mode="shadow",
        created_at=ago(hours=3),
        evidence={"sessions": 51, "converted": 0, "numbers": 51},
    )
    newest = FraudBlockFactory(workspace=workspace, value="+233204123", created_at=ago(minutes=2))
    middle = FraudBlockFactory(workspace=workspace, rule="range_conversion", created_at=ago(hours=1))

    response = api.get(URL)

    assert response.status_code == 200, response.json()
    payload = response.json()
    assert payload["success"] is True and payload["message"] == "Fraud blocks retrieved"
    data = payload["data"]
    assert (data["page"], data["pageSize"], data["total"], data["totalPages"]) == (1, 20, 3, 1)
    assert [item["blockId"] for item in data["items"]] == [str(b.public_id) for b in (newest, middle, country)]
    assert all(set(item) == FIELDS for item in data["items"])
    assert data["items"][0] == {
        "blockId": str(newest.public_id),
        "scope": "range",
        "value": "+233204123",
        "rule": "range_velocity",
        "mode": "enforce",
        "createdAt": iso(newest.created_at),
        "endsAt": iso(newest.ends_at),
        "liftedAt": None,
        "evidence": {"sessions": 11, "converted": 0, "numbers": 11},
    }
    assert data["items"][2]["scope"] == "country" and data["items"][2]["value"] == "GH"
    assert data["items"][2]["mode"] == "shadow" and data["items"][2]["rule"] == "country_velocity"
    assert ISO_RE.fullmatch(data["items"][2]["createdAt"])


def test_the_list_leaves_out_other_workspaces_and_blocks_older_than_30_days(api, workspace, other):
    mine = FraudBlockFactory(workspace=workspace, created_at=ago(days=29, hours=23))
    FraudBlockFactory(workspace=workspace, created_at=ago(days=30, minutes=1))
    FraudBlockFactory(workspace=other, value="+233204999")  # the same moment, another workspace

    items = api.get(URL).json()["data"]["items"]

    assert [item["blockId"] for item in items] == [str(mine.public_id)]


def test_the_list_is_paginated_like_sender_names_and_pages_never_overlap(api, workspace):
    moment = ago(minutes=5)
    blocks = [FraudBlockFactory(workspace=workspace, created_at=moment) for _ in range(5)]  # one instant: ids order

    pages = [api.get(URL, {"page": page, "pageSize": 2}).json()["data"] for page in (1, 2, 3, 4)]

    assert [(p["page"], p["pageSize"], p["total"], p["totalPages"]) for p in pages[:3]] == [
        (1, 2, 5, 3),
        (2, 2, 5, 3),
        (3, 2, 5, 3),
    ]
    listed = [item["blockId"] for p in pages for item in p["items"]]
    assert listed == [str(b.public_id) for b in reversed(blocks)]
    assert pages[3]["items"] == []
    assert api.get(URL, {"pageSize": MAX_PAGE_SIZE + 1}).status_code == 400
    body = assert_api_error(api.get(URL, {"page_size": 2}), status=400, code="VALIDATION_ERROR")
    assert body["errors"] == {"page_size": ["Unknown query parameter."]}


def test_a_test_key_lists_the_blocks(api_of_test_key, workspace):
    block = FraudBlockFactory(workspace=workspace)

    response = api_of_test_key.get(URL)

    assert response.status_code == 200
    assert [item["blockId"] for item in response.json()["data"]["items"]] == [str(block.public_id)]


def test_without_a_key_the_list_is_401(client, workspace):
    FraudBlockFactory(workspace=workspace)
    assert_api_error(client.get(URL), status=401, code="AUTHENTICATION_FAILED")


# --- DELETE: the lift --------------------------------------------------------------------------


def test_a_lift_ends_the_block_at_once_audits_it_and_forgets_it_in_redis_after_commit(
    api, workspace, issued_key, forgotten, django_capture_on_commit_callbacks
):
    block = FraudBlockFactory(workspace=workspace, value="+233204123")
    before = timezone.now()

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = api.delete(block_url(block.public_id))
        assert forgotten == []  # nothing forgotten before the lift is committed
    for callback in callbacks:
        callback()

    assert response.status_code == 200, response.json()
    payload = response.json()
    assert payload["message"] == "Fraud block lifted"
    block.refresh_from_db()
    assert block.lifted_at is not None and before <= block.lifted_at <= timezone.now()
    assert block.lifted_by == f"api:{issued_key[0].prefix}"
    assert payload["data"]["liftedAt"] == iso(block.lifted_at)
    assert payload["data"]["blockId"] == str(block.public_id) and set(payload["data"]) == FIELDS
    assert forgotten == [{"workspace_id": workspace.pk, "scope": "range", "value": "+233204123"}]
    event = the_event(LIFTED)
    assert (event.actor, event.workspace, event.target) == (
        f"api:{issued_key[0].prefix}",
        workspace,
        str(block.public_id),
    )
    assert event.detail == {
        "scope": "range",
        "value": "+233204123",
        "rule": "range_velocity",
        "mode": "enforce",
        "ends_at": block.ends_at.isoformat(),
    }
    listed = api.get(URL).json()["data"]["items"]
    assert listed[0]["liftedAt"] == payload["data"]["liftedAt"]  # still listed: the record of what happened


def test_a_second_lift_answers_200_with_the_block_as_it_is_and_writes_nothing(
    api, workspace, forgotten, django_capture_on_commit_callbacks
):
    """Idempotent, like revoking a revoked key: the first lift's time and author stay, one audit row."""
    block = FraudBlockFactory(workspace=workspace)
    with django_capture_on_commit_callbacks(execute=True):
        first = api.delete(block_url(block.public_id))
        second = api.delete(block_url(block.public_id))

    assert first.status_code == second.status_code == 200
    assert second.json()["data"] == first.json()["data"] and second.json()["data"]["liftedAt"] is not None
    assert second.json()["message"] == "Fraud block lifted"
    assert len(events(LIFTED)) == 1 and len(forgotten) == 1


def test_a_block_that_has_ended_is_answered_as_it_is_and_not_lifted(
    api, workspace, forgotten, django_capture_on_commit_callbacks
):
    block = FraudBlockFactory(workspace=workspace, created_at=ago(hours=2), ends_at=ago(hours=1))

    with django_capture_on_commit_callbacks(execute=True):
        response = api.delete(block_url(block.public_id))

    assert response.status_code == 200
    assert response.json()["message"] == "Fraud block already ended: nothing to lift"
    assert response.json()["data"]["liftedAt"] is None
    block.refresh_from_db()
    assert (block.lifted_at, block.lifted_by) == (None, "")
    assert events(LIFTED) == [] and forgotten == []


def test_a_shadow_decision_is_lifted_like_a_block(api, workspace, forgotten, django_capture_on_commit_callbacks):
    block = FraudBlockFactory(workspace=workspace, mode="shadow", scope="country", value="NG", rule="country_velocity")

    with django_capture_on_commit_callbacks(execute=True):
        response = api.delete(block_url(block.public_id))

    assert response.status_code == 200 and response.json()["data"]["liftedAt"] is not None
    assert forgotten == [{"workspace_id": workspace.pk, "scope": "country", "value": "NG"}]


def test_another_workspaces_block_answers_exactly_like_an_unknown_id(api, other, forgotten):
    foreign = FraudBlockFactory(workspace=other)
    before = FraudBlock.objects.values().get(pk=foreign.pk)

    foreign_response = api.delete(block_url(foreign.public_id))
    missing_response = api.delete(block_url(uuid.uuid4()))

    for response in (foreign_response, missing_response):
        body = assert_api_error(response, status=404, code="NOT_FOUND")
        assert body["message"] == FraudBlockNotFound.default_message
    assert without_request_id(foreign_response) == without_request_id(missing_response)
    assert FraudBlock.objects.values().get(pk=foreign.pk) == before
    assert events(LIFTED) == [] and forgotten == []


def test_a_test_key_cannot_lift_a_block(api_of_test_key, workspace, forgotten):
    block = FraudBlockFactory(workspace=workspace)
    audits = AuditEvent.objects.count()

    for block_id in (block.public_id, uuid.uuid4()):  # whether it exists is not told either
        payload = assert_api_error(api_of_test_key.delete(block_url(block_id)), status=403, code="LIVE_KEY_REQUIRED")
        assert payload["message"] == "A test key cannot change live configuration: use a live (zk_live_) key."

    block.refresh_from_db()
    assert block.lifted_at is None and AuditEvent.objects.count() == audits and forgotten == []


def test_only_uuids_are_block_ids_and_a_block_is_not_read_one_by_one(api, workspace):
    block = FraudBlockFactory(workspace=workspace)
    assert_api_error(api.delete(f"{URL}/not-a-uuid"), status=404, code="NOT_FOUND")
    assert_api_error(api.get(block_url(block.public_id)), status=405, code="METHOD_NOT_ALLOWED")
    assert_api_error(api.post(URL, {}, format="json"), status=405, code="METHOD_NOT_ALLOWED")


@pytest.mark.django_db(transaction=True)
def test_concurrent_lifts_lift_once(workspace, raw_key, forgotten):
    """Two clients lift the same block at the same moment: the conditional UPDATE lets one change the row, so
    there is one lift time, one audit row and one call to forget the block, and both answers agree."""
    block = FraudBlockFactory(workspace=workspace)

    answers = run_together(4, lambda _: api_client(raw_key).delete(block_url(block.public_id)))

    assert [answer.status_code for answer in answers] == [200] * 4
    assert len({answer.json()["data"]["liftedAt"] for answer in answers}) == 1
    assert len(events(LIFTED)) == 1 and len(forgotten) == 1
