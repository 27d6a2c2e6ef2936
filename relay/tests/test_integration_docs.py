"""The configuration files of docs/integrations/, tried against the service as each identity server uses
them: Ory Kratos' courier (its request_config, and its Jsonnet body evaluated as Kratos evaluates it),
authentik's Generic SMS provider with a webhook mapping, and the Keycloak SMS authenticator's SmsService
run by the JDK against a live server."""

import json
import shutil
import subprocess
import textwrap
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlsplit

import _jsonnet
import pytest
import yaml
from django.conf import settings as django_settings

from otp.crypto import decrypt_text
from otp.models import SmsMessage
from senders.tests.factories import SenderNameFactory
from workspaces.tests.factories import issue_key
from zeckta.testing import DEST

DOCS = Path(django_settings.BASE_DIR) / "docs" / "integrations"
TEXT = "Your Acme sign-in code is 482913"


@pytest.fixture
def acme(workspace):
    """The workspace of the documents: relay on, the sender name ACME approved; a live key."""
    workspace.relay_enabled = True
    workspace.save(update_fields=["relay_enabled"])
    SenderNameFactory(workspace=workspace, name="ACME")
    return workspace, issue_key(workspace, name="identity server")[1]


def queued_text(message: SmsMessage) -> str:
    return decrypt_text(bytes(message.encrypted_text))


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("template_type", "purpose"), [("login_code_valid", "LOGIN"), ("verification_code_valid", ""), (None, "")]
)
def test_the_kratos_courier_configuration_relays_its_sms(client, acme, template_type, purpose):
    workspace, raw_key = acme
    (channel,) = yaml.safe_load((DOCS / "kratos" / "kratos.yml").read_text())["courier"]["channels"]
    config = channel["request_config"]
    assert (channel["type"], config["method"], config["body"]) == (
        "http",
        "POST",
        "file:///etc/config/kratos/zeckta-sms.jsonnet",
    )
    ctx = {"to": DEST, "from": "Kratos", "body": TEXT}  # what Kratos binds; template_type since v1.1
    if template_type:
        ctx["template_type"] = template_type
    body = _jsonnet.evaluate_file(str(DOCS / "kratos" / "zeckta-sms.jsonnet"), tla_codes={"ctx": json.dumps(ctx)})
    headers = {
        **config["headers"],
        "Authorization": config["headers"]["Authorization"].replace("zk_live_REPLACE_ME", raw_key),
    }

    response = client.post(
        urlsplit(config["url"]).path,
        body,
        content_type=headers.pop("Content-Type"),
        headers=headers,
        HTTP_X_FORWARDED_PROTO="https",
    )

    assert response.status_code == 202, response.content
    message = SmsMessage.objects.get()
    assert (message.to, message.src, message.purpose, queued_text(message)) == (DEST, "ACME", purpose, TEXT)


@pytest.mark.django_db
def test_the_authentik_webhook_mapping_relays_its_sms(client, acme):
    workspace, raw_key = acme
    expression = (DOCS / "authentik" / "zeckta-webhook-mapping.py").read_text()
    # authentik runs a mapping's expression as the body of a function given its variables.
    namespace: dict = {}
    exec("def mapping(device, token, stage):\n" + textwrap.indent(expression, "    "), namespace)  # noqa: S102
    payload = namespace["mapping"](SimpleNamespace(phone_number=DEST), "482913", SimpleNamespace(from_number=""))

    # authentik's Generic provider with auth type Bearer: the key as "API Auth Username", JSON body.
    response = client.post(
        "/v1/messaging/sms",
        payload,
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {raw_key}",
        HTTP_X_FORWARDED_PROTO="https",
    )

    assert response.status_code == 202, response.content
    message = SmsMessage.objects.get()
    assert (message.to, message.src, message.purpose) == (DEST, "ACME", "LOGIN")
    assert queued_text(message) == "Your Acme sign-in code is 482913. It expires in 5 minutes."


@pytest.mark.skipif(shutil.which("java") is None, reason="no JDK")
def test_the_keycloak_sms_service_relays_its_sms_to_a_running_service(live_server, acme, settings):
    workspace, raw_key = acme
    settings.TRUST_X_FORWARDED_PROTO = True
    # A plain-http live server: the service wants TLS with DEBUG off, as it would get it behind a proxy.
    settings.DEBUG = True

    result = subprocess.run(
        ["java", str(DOCS / "keycloak" / "ZecktaSmsService.java"), "ACME", DEST, f'{TEXT} "quoted"\n'],
        env={"ZECKTA_URL": live_server.url, "ZECKTA_API_KEY": raw_key, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "queued"
    message = SmsMessage.objects.get()
    assert (message.to, message.src, message.purpose) == (DEST, "ACME", "LOGIN")
    assert queued_text(message) == f'{TEXT} "quoted"\n'
