"""Channel fallback with real processes: a Celery worker with its embedded beat, killed between two steps of
the fallback, and a second one that goes on. Nothing is lost and nothing is sent twice, because the timer
is the session's `fallback_at` column and each step is claimed under the session's lock (otp.fallback)."""

import re

import pytest

from otp.models import OtpSession, SmsMessage
from otp.tests.helpers import request_otp, verify
from otp.tests.processes import WorkerProcess
from senders.routes import route_create
from workspaces.models import Workspace
from zeckta.celery import app as celery_app
from zeckta.testing import DEST, wait_for

pytestmark = [pytest.mark.slow]

FALLBACK_AFTER_SECONDS = 5


def channels_sent(session_id: str) -> list[tuple[str, str]]:
    return list(
        SmsMessage.objects.filter(session__public_id=session_id).order_by("id").values_list("channel", "status")
    )


def test_a_worker_killed_between_two_fallbacks_loses_nothing_and_sends_nothing_twice(
    fake_gateway, broker_queue, transactional_db, api, workspace
):
    route_create(name="wa-down", backend="locmem_whatsapp", values={"fail": "permanent"})
    route_create(name="calls", backend="locmem_voice", values={})
    Workspace.objects.filter(pk=workspace.pk).update(
        channels=["whatsapp", "sms", "voice"], fallback_after_seconds=FALLBACK_AFTER_SECONDS, destination_limit=10
    )
    env = {"BEAT_LOCK_TTL_SECONDS": "3", "OTP_FALLBACK_SCAN_SECONDS": "1"}
    url = celery_app.conf.broker_url
    first = WorkerProcess(broker_url=url, gateway=fake_gateway, extra_env=env, beat=True, node="fallback-a")
    second = None
    try:
        first.wait_ready()
        session_id = request_otp(api, DEST).json()["data"]["sessionId"]

        # WhatsApp refused for good: the worker falls back to SMS at once, through the fake provider.
        assert wait_for(lambda: fake_gateway.calls == 1, timeout=20), first.output()
        assert wait_for(lambda: channels_sent(session_id) == [("whatsapp", "failed"), ("sms", "sent")], timeout=10)
        # Killed before the SMS's fallback is due: no process holds its timer.
        first.kill()
        session = OtpSession.objects.get(public_id=session_id)
        assert session.status == "PENDING" and session.fallback_at is not None

        second = WorkerProcess(broker_url=url, gateway=fake_gateway, extra_env=env, beat=True, node="fallback-b")
        second.wait_ready()
        # The SMS was never reported delivered: the call goes out once its delay is over.
        done = [("whatsapp", "failed"), ("sms", "sent"), ("voice", "sent")]
        assert wait_for(lambda: channels_sent(session_id) == done, timeout=30), second.output()
        # A few more scans: still one send per channel, and the SMS went to the provider once.
        assert not wait_for(lambda: len(channels_sent(session_id)) > 3, timeout=FALLBACK_AFTER_SECONDS + 3)
        assert fake_gateway.calls == 1
        session.refresh_from_db()
        assert session.channel == "voice" and session.fallback_at is None

        # The SMS's code was replaced by the call's: it no longer approves.
        sms_code = re.search(r"\b\d{6}\b", fake_gateway.requests[0].json["text"]).group()
        assert verify(api, session_id, sms_code).json()["data"]["status"] == "INVALID"
    finally:
        first.stop()
        if second is not None:
            second.stop()
