"""`make run` with no DATABASE_URL or REDIS_URL: SQLite, in-process tasks, console SMS.

The rest of the suite runs on PostgreSQL, where the hot paths are database functions and hand-written
statements; here the same API calls go through the portable versions, in a subprocess with its own
settings, from a fresh SQLite file.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import json, os, re, sys, contextlib, io
import django
django.setup()
from django.core.management import call_command
from django.test import Client
from senders.services import sender_name_approve, sender_name_create
from workspaces.services import api_key_issue, workspace_create

call_command("migrate", verbosity=0)
workspace = workspace_create(name="Embedded", slug="embedded")
sender_name_approve(sender_name=sender_name_create(workspace=workspace, name="ZECKTA"))
client = Client(HTTP_AUTHORIZATION=f"Bearer {api_key_issue(workspace=workspace).raw_key}")
out = {}

def call(method, path, body=None):
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):  # the console backend prints each SMS
        response = getattr(client, method)(path, body, content_type="application/json") if body is not None \
            else getattr(client, method)(path)
    return response.status_code, response.json(), printed.getvalue()

status, body, sms = call("post", "/v1/messaging/otp/request",
                         {"dest": "+233202007745", "src": "ZECKTA", "purpose": "LOGIN", "webOtpDomain": "example.com"})
session_id = body["data"]["sessionId"]
code = re.search(r"is (\d{6})\.", sms).group(1)
out["request"] = [status, body["data"]["reused"], sms.strip().splitlines()[-1] == f"@example.com #{code}"]
out["reuse"] = call("post", "/v1/messaging/otp/request",
                    {"dest": "+233202007745", "src": "ZECKTA", "purpose": "LOGIN"})[1]["data"]["reused"]
status, body, _ = call("get", f"/v1/messaging/otp/{session_id}")
out["session"] = [status, body["data"]["status"], body["data"]["delivery"]["status"]]
wrong = "%06d" % ((int(code) + 1) % 10**6)
out["wrong"] = call("post", "/v1/messaging/otp/verify", {"sessionId": session_id, "code": wrong})[1]["data"]
out["right"] = call("post", "/v1/messaging/otp/verify", {"sessionId": session_id, "code": code})[1]["data"]["status"]
other = call("post", "/v1/messaging/otp/request",
             {"dest": "+233202007745", "src": "ZECKTA", "purpose": "PASSWORD_RESET"})[1]
other_id = other["data"]["sessionId"]
out["cancel"] = call("post", f"/v1/messaging/otp/{other_id}/cancel", {})[1]["data"]["status"]
out["after_cancel"] = call("post", "/v1/messaging/otp/verify", {"sessionId": other_id, "code": "123456"})[1]["code"]
print(json.dumps(out))
"""


def test_the_api_works_on_sqlite_with_in_process_tasks(tmp_path):
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL")},
        "DJANGO_SETTINGS_MODULE": "zeckta.settings",
        "DEBUG": "True",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'embedded.sqlite3'}",
        "REDIS_URL": "",
        "SMS_BACKEND": "console",
        "PYTHONPATH": str(BASE_DIR),
    }
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])

    assert out["request"] == [200, False, True]  # a new session, its SMS printed with the WebOTP line last
    assert out["reuse"] is True
    assert out["session"] == [200, "PENDING", "sent"]  # sent by the in-process task
    assert out["wrong"]["status"] == "INVALID" and out["wrong"]["attemptsLeft"] == 4
    assert out["right"] == "APPROVED"
    assert out["cancel"] == "CANCELED" and out["after_cancel"] == "CANCELED"
