"""A client generated from the served /openapi.json, as a client of the API would make one: openapi-python-client
turns the document into a package, one module per operation filed under its resource's tag
(`api.otp.otp_request`), typed models for every answer. This one then signs in against a running service
with a test key: request, the code read from the test inbox, a wrong code then the right one, the session,
and an error parsed as the typed envelope.
"""

import importlib
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from django.test import Client

from otp.models import OtpSession
from senders.gateways import locmem
from workspaces.tests.factories import issue_key
from zeckta.testing import DEST

PACKAGE = "zeckta_generated_client"  # a name no installed package has
UNKNOWN_SESSION = "0b7c1f9e-0d5a-4c1e-9a57-3c1a2b9d8e01"
# No formatting hooks (they would run ruff on the generated files): the package is only imported.
CONFIG = f"project_name_override: {PACKAGE}\npackage_name_override: {PACKAGE}\npost_hooks: []\n"


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """The generated package, imported from a temporary directory and forgotten afterwards."""
    tmp_path = tmp_path_factory.mktemp("client")
    (tmp_path / "openapi.json").write_bytes(Client().get("/openapi.json").content)  # reads no database
    (tmp_path / "config.yaml").write_text(CONFIG)
    generator = Path(sys.executable).with_name("openapi-python-client")
    result = subprocess.run(
        [
            str(generator),
            "generate",
            "--path",
            "openapi.json",
            "--config",
            "config.yaml",
            "--meta",
            "none",
            "--output-path",
            PACKAGE,
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    sys.path.insert(0, str(tmp_path))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(tmp_path))
        for name in [name for name in sys.modules if name == PACKAGE or name.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]


def module(package: ModuleType, name: str) -> ModuleType:
    return importlib.import_module(f"{package.__name__}.{name}")


def test_the_operations_are_filed_by_resource(generated):
    api = Path(generated.__file__).parent / "api"
    files = {path.relative_to(api).as_posix() for path in api.rglob("*.py") if path.name != "__init__.py"}
    assert {
        "otp/otp_request.py",
        "otp/otp_verify.py",
        "otp/otp_session_retrieve.py",
        "otp/otp_resend.py",
        "otp/otp_cancel.py",
        "test_inbox/test_inbox_list.py",
        "receipts/sms_receipt.py",
        "sender_names/sender_names_create.py",
        "webhooks/webhooks_create.py",
    } <= files
    assert not (api / "v1").exists() and not (api / "api").exists()


@pytest.mark.django_db(transaction=True)  # the live server's thread reads what the test wrote
def test_a_generated_client_signs_in_end_to_end(generated, live_server, workspace, sender):
    _, raw_key = issue_key(workspace, test=True)
    client = generated.AuthenticatedClient(
        base_url=live_server.url,
        token=raw_key,
        raise_on_unexpected_status=True,
        headers={"X-Forwarded-Proto": "https"},  # as the TLS proxy in front of the service says
    )
    models = module(generated, "models")
    otp = {name: module(generated, f"api.otp.{name}") for name in ("otp_request", "otp_verify", "otp_session_retrieve")}
    inbox = module(generated, "api.test_inbox.test_inbox_list")

    requested = otp["otp_request"].sync(
        client=client,
        body=models.OtpRequestInputRequest(dest=DEST, src=sender.name, purpose=models.OtpRequestInputPurposeEnum.LOGIN),
    )
    assert isinstance(requested, models.OtpRequestEnvelope) and requested.success
    session_id = requested.data.session_id
    assert requested.data.reused is False and requested.data.attempts_left == 5

    listed = inbox.sync(client=client, dest=DEST)
    assert isinstance(listed, models.TestInboxEnvelope) and [m.session_id for m in listed.data] == [session_id]
    code = re.search(r"\b\d{6}\b", listed.data[0].text).group()
    wrong = str((int(code) + 1) % 10**6).zfill(6)

    refused = otp["otp_verify"].sync_detailed(
        client=client, body=models.OtpVerifyInputRequest(session_id=session_id, code=wrong)
    )
    assert refused.status_code == 400 and isinstance(refused.parsed, models.VerifyFailedEnvelope)
    assert refused.parsed.code == models.ErrorCode.INVALID and refused.parsed.data.attempts_left == 4

    approved = otp["otp_verify"].sync(
        client=client, body=models.OtpVerifyInputRequest(session_id=session_id, code=code)
    )
    assert isinstance(approved, models.OtpVerifyEnvelope) and approved.data.verified is True

    session = otp["otp_session_retrieve"].sync(client=client, session_id=session_id)
    assert isinstance(session, models.OtpSessionEnvelope)
    assert session.data.status == models.OtpSessionDataStatusEnum.APPROVED and session.data.dest == DEST

    missing = otp["otp_session_retrieve"].sync_detailed(client=client, session_id=UNKNOWN_SESSION)
    assert missing.status_code == 404 and isinstance(missing.parsed, models.ErrorEnvelope)
    assert missing.parsed.code == models.ErrorCode.NOT_FOUND and missing.parsed.success is False
    assert str(missing.parsed.request_id) == missing.headers["X-Request-ID"]

    assert OtpSession.objects.get().status == "APPROVED" and not locmem.outbox  # test mode: nothing sent
