"""otp_request() (PostgreSQL) reads the pending session without a row lock: a reused request writes nothing,
so it neither waits for a verify that holds the session nor makes its own commit wait for a WAL flush. The
replacement of a pending session re-checks it instead. Real PostgreSQL, a second connection holding the row."""

import threading

import pytest
from django.db import connection, transaction
from django.utils import timezone

from otp.models import OtpSession
from otp.tests.helpers import new_session, request_otp
from webhooks.models import WebhookDelivery
from webhooks.services import webhook_endpoint_create
from workspaces.models import Workspace
from zeckta.testing import DEST, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

WAIT_SECONDS = 20  # a bound for polling, not a timing assertion


@pytest.fixture(autouse=True)
def _database_functions(settings):
    settings.OTP_DATABASE_FUNCTIONS = True  # the function's behaviour (the Python version locks the row)


class RowHolder(threading.Thread):
    """Holds the session's row lock in its own transaction, as a verify in progress does, until released;
    then applies `then` to the row and commits."""

    def __init__(self, session_id: str, then=None) -> None:
        super().__init__()
        self.session_id, self.then = session_id, then
        self.locked, self.release = threading.Event(), threading.Event()

    def run(self) -> None:
        try:
            with transaction.atomic():
                session = OtpSession.objects.select_for_update().get(public_id=self.session_id)
                self.locked.set()
                self.release.wait(timeout=WAIT_SECONDS)
                if self.then:
                    self.then(session)
        finally:
            connection.close()


def in_thread(action) -> tuple[threading.Thread, dict]:
    outcome = {}

    def run() -> None:
        try:
            outcome["response"] = action()
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def waiting_on_a_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0] > 0


def test_a_reused_request_does_not_wait_for_a_verify_holding_the_session(api):
    session_id = new_session(api)
    holder = RowHolder(session_id)
    holder.start()
    try:
        assert holder.locked.wait(timeout=WAIT_SECONDS)
        requester, outcome = in_thread(lambda: request_otp(api, DEST))
        requester.join(timeout=WAIT_SECONDS)
        answered_while_held = not requester.is_alive()
    finally:
        holder.release.set()
        holder.join()
        requester.join()

    assert answered_while_held
    response = outcome["response"]
    assert response.status_code == 200
    assert response.json()["data"]["sessionId"] == session_id and response.json()["data"]["reused"] is True


def test_a_replacement_racing_an_approval_leaves_it_approved_and_reports_no_expiry(api, workspace, settings):
    settings.WEBHOOK_ALLOWED_HOSTS = ["hooks.internal"]
    webhook_endpoint_create(workspace=workspace, url="http://hooks.internal/otp", events=["otp.expired"])
    Workspace.objects.filter(pk=workspace.pk).update(otp_reuse_enabled=False)  # a new request replaces
    session_id = new_session(api)

    def approve(session: OtpSession) -> None:
        OtpSession.objects.filter(pk=session.pk, created_at=session.created_at).update(
            status="APPROVED", verified_at=timezone.now()
        )

    holder = RowHolder(session_id, then=approve)
    holder.start()
    try:
        assert holder.locked.wait(timeout=WAIT_SECONDS)
        requester, outcome = in_thread(lambda: request_otp(api, DEST))
        assert wait_for(waiting_on_a_lock, timeout=WAIT_SECONDS)  # its replacement waits for the approval
    finally:
        holder.release.set()
        holder.join()
        requester.join(timeout=WAIT_SECONDS)

    response = outcome["response"]
    assert response.status_code == 200 and response.json()["data"]["reused"] is False
    assert OtpSession.objects.get(public_id=session_id).status == "APPROVED"
    assert OtpSession.objects.get(public_id=response.json()["data"]["sessionId"]).status == "PENDING"
    assert not WebhookDelivery.objects.filter(event_type="otp.expired").exists()  # nothing was replaced
