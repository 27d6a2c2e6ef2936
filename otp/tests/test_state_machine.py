"""A model of the OTP service, checked step by step against the real API, database and delivery.

Hypothesis drives random sequences of requests, deliveries, verifications, reads and clock jumps across
two workspaces with different policies, and after every step compares what the service answered and
what PostgreSQL holds with a small in-memory model of the contract (API.md sections 2 to 4, and the
resends of section 8). It runs once per version of the rules (`otp_path`: the PostgreSQL functions,
then the Python version).

Each example runs inside one savepoint of the `db` test transaction and is rolled back at teardown,
which is much faster than `transactional_db` flushing the tables. The price is that `on_commit` never
fires, so no Celery task is published: the machine runs the send task's body (`sms_deliver`) itself and
reads the code from the locmem gateway, as a worker would have sent it.

`FUZZ_MAX_EXAMPLES=500 pytest otp/tests/test_state_machine.py` runs it longer.
"""

import math
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import transaction
from django.db.models import OuterRef, Subquery
from django.utils import timezone
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)
from rest_framework.test import APIClient

from otp import delivery
from otp.apis import MESSAGE_RESENT, MESSAGE_REUSED, MESSAGE_SENT
from otp.day_functions import day_functions_sync
from otp.models import OtpSession, SmsMessage
from otp.partitions import partitions_ensure
from otp.tests.helpers import request_otp, resend, session_url, verify, wrong_code
from senders.gateways import locmem
from senders.tests.factories import SenderNameFactory
from workspaces.models import Workspace
from workspaces.tests.factories import WorkspaceFactory, issue_key
from zeckta.testing import api_client

START = datetime(2026, 6, 9, 12, 0, tzinfo=UTC)
DESTINATIONS = ["+233241234567", "+233244000101", "+233247654321"]  # valid Ghanaian mobiles
PURPOSES = ["LOGIN", "PASSWORD_RESET"]
WRONG_CODE_BUDGET = 20  # per destination in a rolling 24 h, every workspace's default (API.md section 2)
GUESS_WINDOW = timedelta(hours=24)
RESEND_COOLDOWNS = [30, 60, 120]  # seconds before resend 1, 2 and 3; there is no 4th (API.md section 8)
PENDING, APPROVED = OtpSession.Status.PENDING, OtpSession.Status.APPROVED
EXPIRED, MAX_ATTEMPTS = OtpSession.Status.EXPIRED, OtpSession.Status.MAX_ATTEMPTS_REACHED

# Verify outcome -> HTTP status (API.md section 3).
VERIFY_HTTP = {"APPROVED": 200, "INVALID": 400, "EXPIRED": 410, "MAX_ATTEMPTS_REACHED": 423, "ALREADY_USED": 409}

POLICIES = st.fixed_dictionaries(
    {
        "otp_reuse_enabled": st.booleans(),
        "otp_max_attempts": st.integers(min_value=1, max_value=5),
        "otp_validity_seconds": st.sampled_from([60, 90, 120, 300]),
        "otp_code_length": st.sampled_from([4, 6, 8]),
        # 3 is the default; 1 makes the limit bite at once; 1000 takes it out of the way.
        "destination_limit": st.sampled_from([1, 3, 1000]),
        "destination_window_seconds": st.sampled_from([120, 600]),
    }
)
# Mostly short steps, so sessions live through several checks; then the edges of the validities and
# windows above.
CLOCK_STEPS = st.one_of(
    st.integers(min_value=1, max_value=45),
    st.sampled_from([59, 60, 61, 119, 120, 121, 299, 300, 301, 599, 600, 601]),
)


@dataclass
class TenantModel:
    workspace: Workspace
    client: APIClient
    reuse: bool
    max_attempts: int
    validity: timedelta
    code_length: int
    destination_limit: int
    window: timedelta


@dataclass
class SessionModel:
    """What the database row must hold; `status` mirrors the stored status, which lags the clock:
    a PENDING row past its expiry is only written EXPIRED by the next verify or request that sees it."""

    session_id: str
    tenant: int
    dest: str
    purpose: str
    created_at: datetime
    expires_at: datetime
    max_attempts: int
    code_length: int
    status: str = PENDING
    attempts_used: int = 0
    verified_at: datetime | None = None
    code: str | None = None  # known once the SMS went out
    delivery: str = SmsMessage.Status.QUEUED  # of the latest send's SMS
    approvals: int = 0
    sends: list[datetime] = field(default_factory=list)  # every SMS, resends too: the destination window counts them
    resends: int = 0
    resend_at: datetime | None = None  # None once no resend is left

    def resend_available_in(self, now: datetime) -> int | None:
        return None if self.resend_at is None else max(math.ceil((self.resend_at - now).total_seconds()), 0)


class OtpServiceMachine(RuleBasedStateMachine):
    sessions = Bundle("sessions")

    def __init__(self) -> None:
        super().__init__()
        # One savepoint per example, rolled back in teardown (which Hypothesis runs even after a failure).
        self._atomic = transaction.atomic()
        self._atomic.__enter__()
        self._travel = time_machine.travel(START, tick=False)
        self._clock = self._travel.start()
        self.now = START
        # PostgreSQL keeps sessions by day (otp.partitions): the days this machine's clock can reach.
        partitions_ensure(now=START, ahead_days=7, back_days=1)
        day_functions_sync()  # the day's functions too: the database path calls them
        self.tenants: list[TenantModel] = []
        self.model: dict[str, SessionModel] = {}
        self.wrong_codes: list[tuple[int, str, datetime]] = []  # (tenant, dest, when), across sessions
        locmem.outbox.clear()

    def teardown(self) -> None:
        try:
            self._travel.stop()
        finally:
            transaction.set_rollback(True)
            self._atomic.__exit__(None, None, None)
            locmem.outbox.clear()

    # --- Setup ---------------------------------------------------------------------------------

    @initialize(policies=st.tuples(POLICIES, POLICIES))
    def create_workspaces(self, policies: tuple[dict, dict]) -> None:
        for policy in policies:
            workspace = WorkspaceFactory(**policy)
            SenderNameFactory(workspace=workspace, name="ZECKTA")
            # The per-key request rate is not what this machine tests.
            raw_key = issue_key(workspace, tps=10_000)[1]
            self.tenants.append(
                TenantModel(
                    workspace=workspace,
                    client=api_client(raw_key),
                    reuse=policy["otp_reuse_enabled"],
                    max_attempts=policy["otp_max_attempts"],
                    validity=timedelta(seconds=policy["otp_validity_seconds"]),
                    code_length=policy["otp_code_length"],
                    destination_limit=policy["destination_limit"],
                    window=timedelta(seconds=policy["destination_window_seconds"]),
                )
            )

    # --- Rules ---------------------------------------------------------------------------------

    @rule(
        target=sessions,
        tenant=st.integers(min_value=0, max_value=1),
        dest=st.sampled_from(DESTINATIONS),
        purpose=st.sampled_from(PURPOSES),
    )
    def request(self, tenant: int, dest: str, purpose: str):
        policy = self.tenants[tenant]
        pending = self._pending(tenant, dest, purpose)
        response = request_otp(policy.client, dest, purpose=purpose)
        body = response.json()

        if pending is not None and policy.reuse and self.now < pending.expires_at:
            before = OtpSession.objects.values("expires_at", "attempts_used").get(public_id=pending.session_id)
            assert response.status_code == 200, body
            assert body["message"] == MESSAGE_REUSED
            assert body["data"] == {
                "sessionId": pending.session_id,
                "expiresInSeconds": math.ceil((pending.expires_at - self.now).total_seconds()),
                "attemptsLeft": pending.max_attempts - pending.attempts_used,
                "reused": True,
                "resendAvailableInSeconds": pending.resend_available_in(self.now),
            }
            # Reuse neither extends the expiry nor gives attempts back.
            after = OtpSession.objects.values("expires_at", "attempts_used").get(public_id=pending.session_id)
            assert after == before == {"expires_at": pending.expires_at, "attempts_used": pending.attempts_used}
            return multiple()

        if self._send_refused(response, tenant, dest):
            # Refused before anything was written: the pending session (if any) is untouched.
            return multiple()

        assert response.status_code == 200, body
        assert body["message"] == MESSAGE_SENT
        data = body["data"]
        assert data["reused"] is False
        assert data["expiresInSeconds"] == policy.validity.total_seconds()
        assert data["attemptsLeft"] == policy.max_attempts
        assert data["resendAvailableInSeconds"] == RESEND_COOLDOWNS[0]
        assert data["sessionId"] not in self.model
        if pending is not None:
            pending.status = EXPIRED  # expired, or replaced because reuse is off
        self.model[data["sessionId"]] = SessionModel(
            session_id=data["sessionId"],
            tenant=tenant,
            dest=dest,
            purpose=purpose,
            created_at=self.now,
            expires_at=self.now + policy.validity,
            max_attempts=policy.max_attempts,
            code_length=policy.code_length,
            sends=[self.now],
            resend_at=self.now + timedelta(seconds=RESEND_COOLDOWNS[0]),
        )
        return data["sessionId"]

    @rule(session_id=sessions)
    def resend(self, session_id: str) -> None:
        session = self.model[session_id]
        policy = self.tenants[session.tenant]
        response = resend(policy.client, session_id)
        body = response.json()

        if session.status != PENDING:
            assert response.status_code == 409 and body["code"] == "SESSION_NOT_PENDING", body
            return
        if self.now >= session.expires_at:
            assert response.status_code == 410 and body["code"] == "EXPIRED", body
            return
        if session.resend_at is None:
            assert response.status_code == 409 and body["code"] == "RESEND_LIMIT_REACHED", body
            return
        if self.now < session.resend_at:
            assert response.status_code == 429 and body["code"] == "RESEND_TOO_SOON", body
            assert response["Retry-After"] == str(session.resend_available_in(self.now))
            return
        if self._send_refused(response, session.tenant, session.dest):
            return

        assert response.status_code == 200, body
        assert body["message"] == MESSAGE_RESENT
        session.resends += 1
        cooldowns = RESEND_COOLDOWNS[session.resends :]
        session.resend_at = self.now + timedelta(seconds=cooldowns[0]) if cooldowns else None
        # A fresh code, the validity restarted, the attempts kept; the new SMS is still to go out.
        session.expires_at = self.now + policy.validity
        session.code, session.delivery = None, SmsMessage.Status.QUEUED
        session.sends.append(self.now)
        assert body["data"] == {
            "sessionId": session_id,
            "expiresInSeconds": policy.validity.total_seconds(),
            "attemptsLeft": session.max_attempts - session.attempts_used,
            "reused": False,
            "resendAvailableInSeconds": session.resend_available_in(self.now),
            "resends": session.resends,
        }

    @rule(session_id=sessions, offset=st.sampled_from([0, -1]))
    def resend_when_due(self, session_id: str, offset: int) -> None:
        """On (or one second before) the instant the cooldown ends: where resends are allowed at all,
        which random clock steps alone rarely reach before the session dies."""
        session = self.model[session_id]
        if session.status != PENDING or session.resend_at is None or session.resend_at <= self.now:
            return
        due = session.resend_at + timedelta(seconds=offset)
        if due > self.now:
            self._move_to(due)
        self.resend(session_id)

    @rule(session_id=sessions)
    def resend_from_other_workspace(self, session_id: str) -> None:
        before = self._db_snapshot()
        response = resend(self._other(self.model[session_id]).client, session_id)
        assert response.status_code == 404 and response.json()["code"] == "NOT_FOUND"
        assert self._db_snapshot() == before

    # This precondition and advance_clock's keep steps for states where they can matter: Hypothesis
    # favours rules with fewer arguments, and empty deliveries or clock jumps before any request test nothing.
    @precondition(lambda self: any(s.delivery == SmsMessage.Status.QUEUED for s in self.model.values()))
    @rule()
    def deliver_queued_sms(self) -> None:
        """The worker runs every queued send task."""
        for session in list(self.model.values()):
            if session.delivery == SmsMessage.Status.QUEUED:
                self._deliver(session)

    @rule(session_id=sessions, right_code=st.booleans())
    def verify(self, session_id: str, right_code: bool) -> None:
        session = self.model[session_id]
        if session.code is None and session.delivery == SmsMessage.Status.QUEUED:
            self._deliver(session)  # the user types the code the SMS carried
        if session.code is None:
            # The SMS was never sent because the session died first: no code can change the answer.
            code = "0" * session.code_length
            assert session.status != PENDING or self.now >= session.expires_at
        else:
            code = session.code if right_code else wrong_code(session.code)

        response = verify(self.tenants[session.tenant].client, session_id, code)
        body = response.json()

        if session.status == APPROVED:
            outcome = "ALREADY_USED"
        elif session.status == MAX_ATTEMPTS:
            outcome = "MAX_ATTEMPTS_REACHED"
        elif session.status == EXPIRED:
            outcome = "EXPIRED"
        elif self.now >= session.expires_at:
            outcome = "EXPIRED"
            session.status = EXPIRED
        elif code == session.code:
            outcome = "APPROVED"
            session.status, session.verified_at = APPROVED, self.now
            session.approvals += 1
        else:
            session.attempts_used += 1
            self.wrong_codes.append((session.tenant, session.dest, self.now))
            if session.attempts_used >= session.max_attempts:
                outcome = "MAX_ATTEMPTS_REACHED"
                session.status = MAX_ATTEMPTS
            else:
                outcome = "INVALID"

        assert response.status_code == VERIFY_HTTP[outcome], (outcome, body)
        assert body["success"] is (outcome == "APPROVED")
        assert body["data"] == {
            "sessionId": session_id,
            "status": outcome,
            "verified": outcome == "APPROVED",
            "attemptsLeft": session.max_attempts - session.attempts_used,
        }
        if outcome != "APPROVED":
            assert body["code"] == outcome

    @rule(session_id=sessions, right_code=st.booleans())
    def verify_from_other_workspace(self, session_id: str, right_code: bool) -> None:
        """Another workspace's session is NOT_FOUND, even with the right code, and nothing changes."""
        session = self.model[session_id]
        code = session.code if (right_code and session.code) else "0" * session.code_length
        before = self._db_snapshot()
        response = verify(self._other(session).client, session_id, code)
        body = response.json()
        assert response.status_code == 404, body
        assert body["code"] == "NOT_FOUND" and body["success"] is False
        assert body["data"] == {"sessionId": session_id, "status": "NOT_FOUND", "verified": False, "attemptsLeft": 0}
        assert self._db_snapshot() == before

    @rule(session_id=sessions)
    def get(self, session_id: str) -> None:
        session = self.model[session_id]
        response = self.tenants[session.tenant].client.get(session_url(session_id))
        assert response.status_code == 200, response.json()
        data = response.json()["data"]
        # A PENDING row past its expiry already reads EXPIRED.
        status = EXPIRED if session.status == PENDING and self.now >= session.expires_at else session.status
        assert data["status"] == status
        assert data["attemptsLeft"] == session.max_attempts - session.attempts_used
        assert data["expiresInSeconds"] == max(math.ceil((session.expires_at - self.now).total_seconds()), 0)
        assert (data["dest"], data["src"], data["purpose"]) == (session.dest, "ZECKTA", session.purpose)
        assert data["delivery"]["status"] == session.delivery
        assert (data["verifiedAt"] is None) == (session.verified_at is None)
        assert data["resends"] == session.resends
        live = status == PENDING
        assert data["resendAvailableInSeconds"] == (session.resend_available_in(self.now) if live else None)

    @rule(session_id=sessions)
    def get_from_other_workspace(self, session_id: str) -> None:
        before = self._db_snapshot()
        response = self._other(self.model[session_id]).client.get(session_url(session_id))
        assert response.status_code == 404 and response.json()["code"] == "NOT_FOUND"
        assert self._db_snapshot() == before

    @precondition(lambda self: bool(self.model))
    @rule(seconds=CLOCK_STEPS)
    def advance_clock(self, seconds: int) -> None:
        self._move_to(self.now + timedelta(seconds=seconds))

    @rule(session_id=sessions, edge=st.sampled_from(["expiry", "window end"]), offset=st.sampled_from([0, -1, 1]))
    def advance_to_edge(self, session_id: str, edge: str, offset: int) -> None:
        """Lands exactly on, one second before or one second after a session's expiry, or the end of the
        destination window it counts in: where an off-by-one (`<` for `<=`) would show."""
        session = self.model[session_id]
        if edge == "expiry":
            target = session.expires_at
        else:
            target = session.created_at + self.tenants[session.tenant].window
        target += timedelta(seconds=offset)
        if target > self.now:
            self._move_to(target)

    # The exact edges by themselves: reached by chance they would be rare in a short run, and they are
    # where an off-by-one (`<` for `<=`) hides.

    @rule(session_id=sessions, right_code=st.booleans())
    def verify_exactly_at_expiry(self, session_id: str, right_code: bool) -> None:
        """At the expiry instant the session is dead: not deliverable, not approvable, no attempt used."""
        session = self.model[session_id]
        if session.status != PENDING or session.expires_at <= self.now:
            return  # the edge is behind us; jumping for nothing would only expire the other sessions
        self._move_to(session.expires_at)
        self.verify(session_id, right_code)

    @rule(target=sessions, session_id=sessions)
    def request_again_exactly_at_window_end(self, session_id: str):
        """When the window of an earlier send ends, that send no longer counts against the limit."""
        session = self.model[session_id]
        policy = self.tenants[session.tenant]
        window_end = session.created_at + policy.window
        if window_end <= self.now or policy.destination_limit > len(self.model):
            return multiple()  # no limit this send could matter for
        self._move_to(window_end)
        return self.request(session.tenant, session.dest, session.purpose)

    # --- Invariants ----------------------------------------------------------------------------

    @invariant()
    def database_matches_the_model(self) -> None:
        if not self.tenants:
            return
        latest_sms = SmsMessage.objects.filter(session=OuterRef("pk")).order_by("-id")
        rows = {
            str(row["public_id"]): row
            for row in OtpSession.objects.filter(workspace__in=[t.workspace for t in self.tenants])
            .annotate(sms_status=Subquery(latest_sms.values("status")[:1]))
            .values(
                "public_id",
                "status",
                "attempts_used",
                "max_attempts",
                "created_at",
                "expires_at",
                "verified_at",
                "dest",
                "purpose",
                "resends",
                "sms_status",
            )
        }
        assert rows.keys() == self.model.keys()
        for session_id, row in rows.items():
            session = self.model[session_id]
            assert row["status"] == session.status, (session_id, row, session)
            # Never more failed checks than allowed; reuse never resets attempts.
            assert row["attempts_used"] == session.attempts_used <= row["max_attempts"] == session.max_attempts
            # Reuse never extends the expiry (a resend does).
            assert (row["created_at"], row["expires_at"]) == (session.created_at, session.expires_at)
            assert (row["dest"], row["purpose"], row["resends"]) == (session.dest, session.purpose, session.resends)
            assert row["sms_status"] == session.delivery
            if row["status"] == APPROVED:
                # Nothing is approved at or after its expiry.
                assert row["verified_at"] == session.verified_at and row["verified_at"] < row["expires_at"]
            else:
                assert row["verified_at"] is None
        sms_rows = SmsMessage.objects.filter(session__public_id__in=list(self.model)).count()
        assert sms_rows == sum(len(session.sends) for session in self.model.values())

    @invariant()
    def at_most_one_approval_per_session(self) -> None:
        assert all(session.approvals <= 1 for session in self.model.values())

    @invariant()
    def at_most_one_pending_session_per_destination_and_purpose(self) -> None:
        pending = Counter(OtpSession.objects.filter(status=PENDING).values_list("workspace_id", "dest", "purpose"))
        assert all(count == 1 for count in pending.values()), pending

    @invariant()
    def at_most_one_sms_per_session(self) -> None:
        sent = Counter(sms.reference for sms in locmem.outbox)
        assert all(count == 1 for count in sent.values()), sent

    @invariant()
    def clock_is_where_the_model_put_it(self) -> None:
        assert timezone.now() == self.now

    # --- Helpers -------------------------------------------------------------------------------

    def _pending(self, tenant: int, dest: str, purpose: str) -> SessionModel | None:
        found = [
            s
            for s in self.model.values()
            if s.tenant == tenant and s.dest == dest and s.purpose == purpose and s.status == PENDING
        ]
        assert len(found) <= 1
        return found[0] if found else None

    def _send_refused(self, response, tenant: int, dest: str) -> bool:
        """Whether a new SMS to `dest` (a request's or a resend's) must be refused by a send limit, and if
        so that the answer says which and when to retry."""
        policy = self.tenants[tenant]
        counted = sorted(
            (
                at
                for s in self.model.values()
                if s.tenant == tenant and s.dest == dest
                for at in s.sends
                if at > self.now - policy.window
            ),
            reverse=True,
        )[: policy.destination_limit]
        guesses = sorted(
            (at for t, d, at in self.wrong_codes if (t, d) == (tenant, dest) and at > self.now - GUESS_WINDOW),
            reverse=True,
        )[:WRONG_CODE_BUDGET]
        if len(counted) >= policy.destination_limit:
            reopens = counted[-1] + policy.window
        elif len(guesses) >= WRONG_CODE_BUDGET:
            # A new session would buy a fresh guess budget: refused until the oldest wrong code leaves.
            reopens = guesses[-1] + GUESS_WINDOW
        else:
            return False
        assert response.status_code == 429, response.json()
        assert response.json()["code"] == "DESTINATION_RATE_LIMITED"
        assert response["Retry-After"] == str(max(math.ceil((reopens - self.now).total_seconds()), 1))
        return True

    def _other(self, session: SessionModel) -> TenantModel:
        return self.tenants[1 - session.tenant]

    def _move_to(self, when: datetime) -> None:
        self._clock.move_to(when)
        self.now = when

    def _deliver(self, session: SessionModel) -> None:
        """Runs the send task for one session's SMS and checks it sent exactly when the model says so."""
        message = SmsMessage.objects.filter(session__public_id=session.session_id).latest("id")
        already_sent = len(locmem.outbox)
        result = delivery.sms_deliver(message_id=message.pk)
        sent = [sms for sms in locmem.outbox[already_sent:] if sms.reference == str(message.public_id)]
        if session.status == PENDING and self.now < session.expires_at:
            assert result == SmsMessage.Status.SENT
            assert len(sent) == 1 and (sent[0].to, sent[0].src) == (session.dest, "ZECKTA")
            match = re.search(rf"\b(\d{{{session.code_length}}})\b", sent[0].text)
            assert match, "the SMS carries no code of the workspace's length"
            session.code = match.group(1)
        else:
            # A dead OTP is never sent.
            assert result == SmsMessage.Status.EXPIRED
            assert sent == []
        session.delivery = result

    @staticmethod
    def _db_snapshot() -> list[tuple]:
        return list(
            OtpSession.objects.order_by("pk", "sms_messages__id").values_list(
                "pk",
                "status",
                "attempts_used",
                "expires_at",
                "verified_at",
                "resends",
                "sms_messages__status",
                "sms_messages__attempts",
            )
        )


FUZZ_MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES") or 0)


def _settings() -> settings:
    return settings(
        max_examples=FUZZ_MAX_EXAMPLES or 30,
        stateful_step_count=25,
        deadline=None,
        # `make test` runs the same sequences every time; a fuzz run explores new ones and prints a blob
        # (@reproduce_failure) to replay what it found.
        derandomize=not FUZZ_MAX_EXAMPLES,
        print_blob=bool(FUZZ_MAX_EXAMPLES),
        database=None,
        # No explain phase: it traces every line (sys.settrace on Python 3.11) and makes reporting a
        # failure take minutes; the printed steps are explanation enough.
        phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# A failure is shrunk to its shortest sequence of steps, which can take longer than the default test
# timeout; a fuzz run takes as long as it needs.
@pytest.mark.timeout(0 if FUZZ_MAX_EXAMPLES else 600)
def test_otp_service_follows_its_model(db, otp_path):
    # Both versions of the rules, each against the model; test_paths_agree.py holds them to each other.
    run_state_machine_as_test(OtpServiceMachine, settings=_settings())
