"""The sender-names API (API.md section 5): every call scoped to the caller's workspace, every answer enveloped."""

import re
import uuid
from datetime import UTC, timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from senders.errors import SenderNameNotFound
from senders.models import SenderName
from senders.services import sender_name_reject
from senders.tests.factories import SenderNameFactory
from workspaces.models import AuditEvent
from workspaces.tests.factories import WorkspaceFactory, issue_key
from zeckta.api.pages import MAX_PAGE_SIZE
from zeckta.testing import api_client, assert_api_error

URL = "/v1/messaging/sender-names"
ISO_RE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
FIELDS = {
    "senderNameId",
    "sender",
    "senderType",
    "purpose",
    "countryCode",
    "status",
    "statusReason",
    "submittedAt",
    "approvedAt",
}


def detail_url(sender_name_id) -> str:
    return f"{URL}/{sender_name_id}"


def body(sender: str = "MYSHOP", sender_type: str = "alphanumeric", purpose: str = "Login codes", **extra) -> dict:
    return {"sender": sender, "senderType": sender_type, "purpose": purpose, **extra}


def without_request_id(response) -> dict:
    data = response.json()
    assert "requestId" in data
    return {key: value for key, value in data.items() if key != "requestId"}


@pytest.fixture
def pending(workspace):
    return SenderNameFactory(
        workspace=workspace, name="PENDINGCO", status=SenderName.Status.PENDING, approved_at=None, purpose="Alerts"
    )


@pytest.fixture
def other_api(db):
    """A client of another workspace, with a sender name of its own."""
    other = WorkspaceFactory(name="Other", slug="other")
    SenderNameFactory(workspace=other, name="OTHERCO")
    return api_client(issue_key(other)[1])


# --- POST --------------------------------------------------------------------------------------


def test_it_creates_a_pending_request_and_answers_with_its_exact_shape(api, workspace):
    response = api.post(URL, body(countryCode="gh"), format="json")

    assert response.status_code == 201, response.json()
    payload = response.json()
    assert set(payload) == {"success", "message", "data", "requestId"}
    assert payload["success"] is True
    assert payload["message"] == "Sender name submitted for approval"
    assert response["X-Request-ID"] == payload["requestId"]
    data = payload["data"]
    assert set(data) == FIELDS
    row = SenderName.objects.get(workspace=workspace, name="MYSHOP")
    assert data == {
        "senderNameId": str(row.public_id),
        "sender": "MYSHOP",
        "senderType": "alphanumeric",
        "purpose": "Login codes",
        "countryCode": "GH",
        "status": "PENDING",
        "statusReason": None,
        "submittedAt": data["submittedAt"],
        "approvedAt": None,
    }
    assert ISO_RE.fullmatch(data["submittedAt"])
    assert (row.status, row.purpose, row.country_code, row.approved_at) == ("PENDING", "Login codes", "GH", None)


def test_country_code_is_optional_and_null_when_absent(api):
    response = api.post(URL, body(), format="json")

    assert response.status_code == 201, response.json()
    assert response.json()["data"]["countryCode"] is None


@pytest.mark.parametrize(
    ("sender_type", "sender"),
    [
        ("alphanumeric", "ABC"),
        ("alphanumeric", "My Shop.1-2"),  # 11 characters, every allowed kind
        ("alphanumeric", "1a2"),
        ("msisdn", "+233202007745"),
        ("msisdn", "+14155552671"),
        ("shortcode", "123"),
        ("shortcode", "12345678"),
    ],
)
def test_it_accepts_a_valid_sender_of_each_type(api, workspace, sender_type, sender):
    response = api.post(URL, body(sender, sender_type), format="json")

    assert response.status_code == 201, response.json()
    assert response.json()["data"]["senderType"] == sender_type
    assert SenderName.objects.filter(workspace=workspace, name=sender, sender_type=sender_type).exists()


@pytest.mark.parametrize(
    ("sender_type", "sender"),
    [
        ("alphanumeric", "AB"),  # too short
        ("alphanumeric", "ABCDEFGHIJKL"),  # 12 characters
        ("alphanumeric", "12345"),  # no letter
        ("alphanumeric", "ZECK_TA"),
        ("alphanumeric", "ZÉCKTA"),
        ("alphanumeric", "+233202007745"),
        ("msisdn", "0202007745"),  # national form
        ("msisdn", "+233 20 200 7745"),
        ("msisdn", "233202007745"),
        ("msisdn", "+2331"),
        ("msisdn", "ZECKTA"),
        ("shortcode", "12"),
        ("shortcode", "123456789"),
        ("shortcode", "12a4"),
        ("shortcode", "+1234"),
    ],
)
def test_it_refuses_an_invalid_sender_for_its_type(api, workspace, sender_type, sender):
    before = SenderName.objects.count()

    response = api.post(URL, body(sender, sender_type), format="json")

    assert response.status_code == 400
    payload = response.json()
    assert payload["success"] is False
    assert payload["code"] == "VALIDATION_ERROR"
    assert payload["data"] is None
    assert set(payload["errors"]) == {"sender"}
    assert SenderName.objects.count() == before


@pytest.mark.parametrize(
    ("payload", "fields"),
    [
        ({}, {"sender", "senderType", "purpose"}),
        (body(sender_type="email"), {"senderType"}),
        (body(purpose="   "), {"purpose"}),
        (body(sender=12345678, sender_type="shortcode"), {"sender"}),
        (body(countryCode="XX"), {"countryCode"}),
        (body(countryCode="GHA"), {"countryCode"}),
        (body(purpose="x" * 501), {"purpose"}),
    ],
)
def test_it_reports_each_invalid_field(api, payload, fields):
    response = api.post(URL, payload, format="json")

    assert_api_error(response, status=400, code="VALIDATION_ERROR")
    assert set(response.json()["errors"]) == fields


def test_a_duplicate_sender_in_the_same_workspace_is_a_conflict(api, workspace):
    response = api.post(URL, body("ZECKTA"), format="json")  # the fixture's approved sender

    assert response.status_code == 409
    payload = response.json()
    assert payload["code"] == "SENDER_NAME_EXISTS"
    assert payload["errors"] == {"sender": ["This workspace already has the sender name 'ZECKTA'."]}
    assert SenderName.objects.filter(workspace=workspace, name="ZECKTA").count() == 1


def test_another_workspace_may_hold_the_same_sender(api, other_api):
    response = other_api.post(URL, body("ZECKTA"), format="json")

    assert response.status_code == 201, response.json()
    assert SenderName.objects.filter(name="ZECKTA").count() == 2


def test_a_body_that_is_not_json_is_refused(api):
    response = api.post(URL, "sender=ABC", content_type="application/x-www-form-urlencoded")

    assert_api_error(response, status=415, code="UNSUPPORTED_MEDIA_TYPE")


# --- GET one and GET the list -------------------------------------------------------------------


def test_it_returns_one_sender_name(api, sender):
    response = api.get(detail_url(sender.public_id))

    assert response.status_code == 200
    payload = response.json()
    assert payload["message"] == "Sender name retrieved"
    assert payload["data"] == {
        "senderNameId": str(sender.public_id),
        "sender": "ZECKTA",
        "senderType": "alphanumeric",
        "purpose": "",
        "countryCode": None,
        "status": "APPROVED",
        "statusReason": None,
        "submittedAt": payload["data"]["submittedAt"],
        "approvedAt": sender.approved_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    assert ISO_RE.fullmatch(payload["data"]["submittedAt"])


def test_paths_are_exactly_those_of_the_contract(api, sender):
    # No trailing-slash variants: one path per resource, as API.md and the OpenAPI document name them.
    assert api.get(detail_url(sender.public_id)).status_code == 200
    assert api.get(detail_url(sender.public_id) + "/").json()["code"] == "NOT_FOUND"


@pytest.mark.parametrize("path", ["/not-a-uuid", "/123", "/ZECKTA"])
def test_an_id_that_is_not_a_uuid_is_an_unknown_route(api, path):
    response = api.get(URL + path)

    assert_api_error(response, status=404, code="NOT_FOUND")


def test_it_lists_the_workspace_sender_names_in_pages(api, workspace, pending, other_api):
    response = api.get(URL)

    assert response.status_code == 200
    payload = response.json()
    assert payload["message"] == "Sender names retrieved"
    data = payload["data"]
    assert {key: value for key, value in data.items() if key != "items"} == {
        "page": 1,
        "pageSize": 20,
        "total": 2,
        "totalPages": 1,
    }
    # Ordered by sender; the other workspace's OTHERCO is not there.
    assert [item["sender"] for item in data["items"]] == ["PENDINGCO", "ZECKTA"]
    assert all(set(item) == FIELDS for item in data["items"])
    assert data["items"][0]["status"] == "PENDING"


def test_pages_split_the_list_without_overlap(api, workspace):
    for index in range(4):
        SenderNameFactory(workspace=workspace, name=f"BRAND{index}")  # with ZECKTA: five in all

    first = api.get(URL, {"page": 1, "pageSize": 2}).json()["data"]
    second = api.get(URL, {"page": 2, "pageSize": 2}).json()["data"]
    third = api.get(URL, {"page": 3, "pageSize": 2}).json()["data"]
    past_the_end = api.get(URL, {"page": 10**30, "pageSize": 2}).json()["data"]

    assert [item["sender"] for item in first["items"]] == ["BRAND0", "BRAND1"]
    assert [item["sender"] for item in second["items"]] == ["BRAND2", "BRAND3"]
    assert [item["sender"] for item in third["items"]] == ["ZECKTA"]
    assert (first["total"], first["totalPages"], first["pageSize"]) == (5, 3, 2)
    assert past_the_end["items"] == [] and past_the_end["total"] == 5


def test_the_largest_page_size_is_the_cap(api):
    assert api.get(URL, {"pageSize": MAX_PAGE_SIZE}).json()["data"]["pageSize"] == MAX_PAGE_SIZE


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"page": 0}, "page"),
        ({"page": "two"}, "page"),
        ({"pageSize": 0}, "pageSize"),
        ({"pageSize": "-5"}, "pageSize"),
        ({"pageSize": MAX_PAGE_SIZE + 1}, "pageSize"),
        ({"page_size": 5}, "page_size"),
    ],
)
def test_invalid_paging_is_a_validation_error(api, params, field):
    response = api.get(URL, params)

    assert_api_error(response, status=400, code="VALIDATION_ERROR")
    assert set(response.json()["errors"]) == {field}


@pytest.mark.parametrize("count", [1, 30])
def test_the_list_costs_the_same_queries_however_many_items(api, workspace, count, django_assert_num_queries):
    for index in range(count):
        SenderNameFactory(workspace=workspace, name=f"BRAND{index}")

    # Key lookup, its last-used stamp (a fresh key), the count and the page itself.
    with django_assert_num_queries(4):
        response = api.get(URL, {"pageSize": 50})

    assert response.status_code == 200
    assert len(response.json()["data"]["items"]) == count + 1


# --- PUT ----------------------------------------------------------------------------------------


def test_it_replaces_a_pending_request(api, pending):
    response = api.put(
        detail_url(pending.public_id), body("NEWNAME", purpose="Receipts", countryCode="NG"), format="json"
    )

    assert response.status_code == 200, response.json()
    payload = response.json()
    assert payload["message"] == "Sender name updated and resubmitted for approval"
    assert payload["data"]["senderNameId"] == str(pending.public_id)
    assert (payload["data"]["sender"], payload["data"]["purpose"], payload["data"]["countryCode"]) == (
        "NEWNAME",
        "Receipts",
        "NG",
    )
    assert payload["data"]["status"] == "PENDING"
    pending.refresh_from_db()
    assert (pending.name, pending.purpose, pending.country_code, pending.status) == (
        "NEWNAME",
        "Receipts",
        "NG",
        "PENDING",
    )


def test_a_rejected_request_goes_back_to_pending_without_its_reason(api, pending):
    sender_name_reject(sender_name=pending, reason="Looks like a bank's name")
    SenderName.objects.filter(pk=pending.pk).update(submitted_at=timezone.now() - timedelta(days=2))
    pending.refresh_from_db()
    first_submitted = pending.submitted_at
    assert api.get(detail_url(pending.public_id)).json()["data"]["statusReason"] == "Looks like a bank's name"

    response = api.put(detail_url(pending.public_id), body("PENDINGCO", purpose="Alerts, really"), format="json")

    assert response.status_code == 200, response.json()
    data = response.json()["data"]
    assert (data["status"], data["statusReason"], data["approvedAt"]) == ("PENDING", None, None)
    pending.refresh_from_db()
    assert (pending.status, pending.status_reason, pending.purpose) == ("PENDING", "", "Alerts, really")
    assert pending.submitted_at > first_submitted  # resubmitted: staff see it as a new request


def test_an_approved_sender_cannot_be_changed(api, sender):
    response = api.put(detail_url(sender.public_id), body("RENAMED"), format="json")

    assert response.status_code == 409
    payload = response.json()
    assert payload["code"] == "SENDER_NAME_NOT_EDITABLE"
    assert payload["success"] is False and payload["data"] is None
    sender.refresh_from_db()
    assert (sender.name, sender.status) == ("ZECKTA", "APPROVED")


def test_a_put_is_validated_like_a_post(api, pending):
    response = api.put(detail_url(pending.public_id), body("12", "shortcode"), format="json")

    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"sender"}
    pending.refresh_from_db()
    assert pending.name == "PENDINGCO"


def test_a_put_onto_another_sender_of_the_workspace_is_a_conflict(api, pending):
    response = api.put(detail_url(pending.public_id), body("ZECKTA"), format="json")

    assert_api_error(response, status=409, code="SENDER_NAME_EXISTS")
    pending.refresh_from_db()
    assert pending.name == "PENDINGCO"


# --- DELETE -------------------------------------------------------------------------------------


def test_it_deletes_a_sender_name(api, pending):
    response = api.delete(detail_url(pending.public_id))

    assert response.status_code == 200
    assert without_request_id(response) == {"success": True, "message": "Sender name deleted", "data": None}
    # A soft delete (API.md section 5): kept for the sessions it sent, gone from the API.
    assert SenderName.objects.get(pk=pending.pk).deleted_at is not None
    assert api.get(detail_url(pending.public_id)).status_code == 404
    assert api.delete(detail_url(pending.public_id)).status_code == 404


def test_an_unused_approved_sender_can_be_deleted(api, sender):
    assert api.delete(detail_url(sender.public_id)).status_code == 200
    assert SenderName.objects.get(pk=sender.pk).deleted_at is not None
    assert api.get(URL).json()["data"]["total"] == 0


# --- Tenancy and authentication -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "payload"),
    [("get", None), ("put", body("TAKEN")), ("delete", None)],
)
def test_another_workspace_sender_answers_exactly_like_a_missing_one(api, other_api, method, payload):
    foreign = SenderName.objects.get(name="OTHERCO")
    foreign_before = SenderName.objects.values().get(pk=foreign.pk)
    call = getattr(api, method)
    kwargs = {"format": "json"} if payload else {}

    foreign_response = call(detail_url(foreign.public_id), payload, **kwargs)
    missing_response = call(detail_url(uuid.uuid4()), payload, **kwargs)

    assert foreign_response.status_code == missing_response.status_code == 404
    assert (
        without_request_id(foreign_response)
        == without_request_id(missing_response)
        == {
            "success": False,
            "message": SenderNameNotFound.default_message,
            "code": "NOT_FOUND",
            "data": None,
        }
    )
    assert foreign_response.content.replace(
        foreign_response.json()["requestId"].encode(), b""
    ) == missing_response.content.replace(missing_response.json()["requestId"].encode(), b"")
    assert SenderName.objects.values().get(pk=foreign.pk) == foreign_before


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", ""),
        ("post", ""),
        ("get", f"/{uuid.uuid4()}"),
        ("put", f"/{uuid.uuid4()}"),
        ("delete", f"/{uuid.uuid4()}"),
    ],
)
def test_every_endpoint_needs_a_key(db, method, path):
    response = getattr(APIClient(), method)(URL + path, body(), format="json")

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"
    assert response.json()["code"] == "AUTHENTICATION_FAILED"
    assert not SenderName.objects.exists()


def test_an_unsupported_method_is_refused_in_the_envelope(api, sender):
    response = api.patch(detail_url(sender.public_id), {"purpose": "x"}, format="json")

    assert_api_error(response, status=405, code="METHOD_NOT_ALLOWED")


# --- test keys (API.md section 10) ---------------------------------------------------------------


@pytest.fixture
def api_of_test_key(workspace):
    return api_client(issue_key(workspace, name="tests", test=True)[1])


def test_a_test_key_lists_and_reads_the_workspace_sender_names(api_of_test_key, sender, pending):
    listed = api_of_test_key.get(URL)
    one = api_of_test_key.get(detail_url(sender.public_id))

    assert listed.status_code == 200 and {item["sender"] for item in listed.json()["data"]["items"]} == {
        "ZECKTA",
        "PENDINGCO",
    }
    assert one.status_code == 200 and one.json()["data"]["status"] == "APPROVED"


def test_a_test_key_cannot_create_change_or_delete_a_sender_name(api_of_test_key, workspace, sender, pending):
    rows = list(SenderName.objects.order_by("pk").values())
    audits = AuditEvent.objects.count()

    answers = [
        api_of_test_key.post(URL, body(), format="json"),
        api_of_test_key.put(detail_url(pending.public_id), body(sender="RENAMED"), format="json"),
        api_of_test_key.delete(detail_url(sender.public_id)),
        api_of_test_key.delete(detail_url(uuid.uuid4())),  # unknown or not: a test key changes nothing
    ]

    for response in answers:
        payload = assert_api_error(response, status=403, code="LIVE_KEY_REQUIRED")
        assert payload["message"] == "A test key cannot change live configuration: use a live (zk_live_) key."
    assert list(SenderName.objects.order_by("pk").values()) == rows
    assert AuditEvent.objects.count() == audits
    assert api_of_test_key.get(detail_url(sender.public_id)).status_code == 200  # still there, still usable
