import json
import shlex
from io import StringIO

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from otp.apis import MESSAGE_SENT
from senders.models import SenderName
from workspaces.models import ApiKey, Workspace


def run_ensure_demo(*args: str) -> list[str]:
    out = StringIO()
    call_command("ensure_demo", *args, stdout=out)
    return out.getvalue().splitlines()


def printed_request_curl(lines: list[str]) -> list[str]:
    (line,) = [line for line in lines if "/v1/messaging/otp/request" in line]
    return shlex.split(line)


@pytest.mark.django_db
def test_it_creates_the_demo_workspace_an_approved_sender_and_a_working_key(sms_outbox):
    lines = run_ensure_demo()

    workspace = Workspace.objects.get(slug="demo")
    assert SenderName.objects.get(workspace=workspace).status == SenderName.Status.APPROVED
    raw_key = lines[-1]
    assert raw_key.startswith("zk_live_")
    key = ApiKey.objects.get(workspace=workspace)
    assert key.name == "demo" and key.revoked_at is None
    assert raw_key not in {key.prefix, key.digest}  # only the digest is stored

    # The printed curl is a real request: replay its header and body through the API.
    argv = printed_request_curl(lines)
    assert argv[argv.index("-X") + 1] == "POST"
    assert argv[argv.index("-X") + 2] == "http://127.0.0.1:8000/v1/messaging/otp/request"
    headers = [argv[i + 1] for i, part in enumerate(argv) if part == "-H"]
    assert f"Authorization: Bearer {raw_key}" in headers
    body = json.loads(argv[argv.index("-d") + 1])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    response = client.post("/v1/messaging/otp/request", body, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["message"] == MESSAGE_SENT


@pytest.mark.django_db
def test_a_second_run_issues_a_new_key_and_revokes_the_previous_demo_key():
    first_key = run_ensure_demo()[-1]
    second_key = run_ensure_demo()[-1]

    assert first_key != second_key
    assert Workspace.objects.filter(slug="demo").count() == 1
    assert SenderName.objects.filter(workspace__slug="demo").count() == 1
    keys = ApiKey.objects.filter(workspace__slug="demo")
    assert keys.count() == 2
    assert keys.filter(revoked_at__isnull=True).count() == 1

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {first_key}")
    assert client.get("/v1/messaging/otp/00000000-0000-4000-8000-000000000000").status_code == 401


@pytest.mark.django_db
def test_keep_old_keys_leaves_earlier_demo_keys_live():
    run_ensure_demo()
    run_ensure_demo("--keep-old-keys")

    assert ApiKey.objects.filter(workspace__slug="demo", revoked_at__isnull=True).count() == 2


@pytest.mark.django_db
def test_it_approves_an_existing_pending_demo_sender():
    workspace = Workspace.objects.create(name="Demo", slug="demo")
    SenderName.objects.create(workspace=workspace, name="ZECKTA", status=SenderName.Status.PENDING)

    run_ensure_demo()

    sender = SenderName.objects.get(workspace=workspace)
    assert sender.status == SenderName.Status.APPROVED and sender.approved_at is not None
