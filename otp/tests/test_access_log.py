"""The access log of the web process as shipped (the Procfile's `web:` line, gunicorn.conf.py read from the
working directory) never writes a receipt token that travels in the URL (Infobip's `?token=`)."""

import http.client
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from otp.models import EarlyReceipt
from otp.tests.processes import serves_http
from scripts.serve import procfile
from zeckta.testing import free_port, wait_for

BASE_DIR = Path(__file__).resolve().parents[2]
TOKEN = "receipt-token-that-must-not-be-logged"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]


def post(port: int, path: str, body: bytes) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(
            "POST",
            path,
            body=body,
            headers={
                "Host": "localhost",
                "X-Forwarded-Proto": "https",
                "Content-Type": "application/json",
                "Referer": f"https://portal.example.com/reports?token={TOKEN}",
            },
        )
        return connection.getresponse().status
    finally:
        connection.close()


@pytest.mark.django_db(transaction=True)
def test_a_receipt_token_in_the_url_never_reaches_the_access_log(tmp_path):
    port = free_port()
    db = settings.DATABASES["default"]
    log = tmp_path / "web.log"
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(BASE_DIR),
        "BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "1",
        "DJANGO_SETTINGS_MODULE": "zeckta.settings_test",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "SMS_BACKEND": "http",
        "SMS_HTTP_URL": "http://127.0.0.1:9/sms",
        "SMS_HTTP_RECEIPT_TOKEN": TOKEN,
        "METRICS_DIR": str(tmp_path / "metrics"),
    }
    process = subprocess.Popen(
        ["/bin/sh", "-c", procfile()["web"]],
        cwd=BASE_DIR,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        assert wait_for(lambda: serves_http(port), timeout=60), log.read_text()
        body = b'{"id": "provider-id-1", "status": "delivered"}'
        accepted = post(port, f"/v1/webhooks/sms/default?token={TOKEN}", body)
        refused = post(port, f"/v1/webhooks/sms/default?token={TOKEN}x", body)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
    output = log.read_text()

    assert (accepted, refused) == (200, 403)
    assert EarlyReceipt.objects.filter(provider_message_id="provider-id-1").count() == 1
    access_lines = [line for line in output.splitlines() if "/v1/webhooks/sms/default" in line]
    assert len(access_lines) >= 2, output  # the access log is on, and wrote both requests
    assert '"POST /v1/webhooks/sms/default HTTP/1.1" 200' in output
    assert TOKEN not in output
