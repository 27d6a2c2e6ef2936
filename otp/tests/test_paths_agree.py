"""The two versions of the OTP rules give the same answers: the PostgreSQL functions of otp/sql/ with the
Python paths production mixes in, and the Python version alone (what SQLite runs).

STYLE.md "One home per rule": a rule kept twice is proven equal by the same property-based test run
against both. Hypothesis drives one random sequence of operations (requests with live and test keys, to
ordinary and reviewer numbers, resends, deliveries, verifies right and wrong, cancels, reads, the expiry
sweep, clock jumps) over twin workspaces: each logical workspace exists twice with the same policy, one
served as production serves it (`OTP_DATABASE_FUNCTIONS` on: live postpaid requests and every verify in
SQL, prepaid, test and reviewer requests in Python) and one served by Python only. Every operation runs
against both twins at the same frozen instant, and after each step the answers (status, body with the
session ids mapped, Retry-After) and the database (sessions, SMS, wrong codes, daily counts, balance,
ledger, test inbox, webhook events) must be the same.

Where test_state_machine.py checks each version against a model of the contract, this needs no model:
the two versions are each other's oracle, so it also reaches what the model leaves out (prepaid
balances, daily caps, country ceilings, wrong-code budgets, test mode, reviewer numbers, events).

`make test` runs a bounded, deterministic pass; `FUZZ_MAX_EXAMPLES=500` runs it longer, with new sequences.
"""

import json
import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import transaction
from django.test import override_settings
from hypothesis import HealthCheck, Phase, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)
from rest_framework.test import APIClient

from otp import delivery
from otp.crypto import decrypt_inbox_text
from otp.day_functions import day_functions_sync
from otp.expiry import otp_sessions_expire
from otp.models import DailySmsCount, OtpSession, SmsMessage, TestInboxMessage, WrongCode
from otp.partitions import partitions_ensure
from otp.testmode import reviewer_number_add
from otp.tests.helpers import cancel, request_otp, resend, session_url, verify, wrong_code
from senders.gateways import locmem
from senders.tests.factories import SenderNameFactory
from webhooks.models import Event, WebhookDelivery
from webhooks.services import webhook_endpoint_create
from workspaces.models import LedgerEntry, Workspace
from workspaces.tests.factories import WorkspaceFactory, issue_key
from zeckta.testing import api_client

WORLDS = ("sql", "python")  # OTP_DATABASE_FUNCTIONS on (production) and off (SQLite's version)
START = datetime(2026, 6, 9, 12, 0, tzinfo=UTC)
DESTINATIONS = ["+233241234567", "+233244000101", "+233247654321"]  # valid Ghanaian mobiles
REVIEWER_DEST = DESTINATIONS[2]
REVIEWER_CODE = "13579"
PURPOSES = ["LOGIN", "PASSWORD_RESET"]
HOOKS_HOST = "hooks.internal"
ACTIONS = ["verify right"] * 4 + ["verify wrong"] * 3 + ["resend"] * 2 + ["get", "cancel"]

POLICIES = st.fixed_dictionaries(
    {
        "otp_reuse_enabled": st.booleans(),
        "otp_max_attempts": st.integers(min_value=1, max_value=4),
        "otp_validity_seconds": st.sampled_from([60, 300]),
        "otp_code_length": st.sampled_from([4, 6]),
        "destination_limit": st.sampled_from([1, 3, 1000]),
        "destination_window_seconds": st.sampled_from([120, 600]),
        "wrong_code_budget": st.sampled_from([2, 20]),
        "daily_sms_cap": st.sampled_from([0, 3, 10_000]),  # 0: no cap
        "country_hourly_limit": st.sampled_from([None, 2]),
        "is_prepaid": st.booleans(),
        "balance_units": st.sampled_from([1, 3, 1000]),
    }
)
# Mostly short steps, so sessions live through several operations; then the edges of validities, windows
# and resend cooldowns.
CLOCK_STEPS = st.one_of(st.integers(min_value=1, max_value=30), st.sampled_from([59, 60, 61, 120, 300, 601]))


@dataclass
class Twin:
    """One logical workspace: the same policy, once per world."""

    workspaces: dict[str, Workspace]
    live: dict[str, APIClient]
    test: dict[str, APIClient]
    code_length: int


@dataclass
class TwinSession:
    tenant: int
    test: bool
    dest: str
    ids: dict[str, str]  # world -> sessionId
    codes: dict[str, str | None] = field(default_factory=dict)  # world -> the code its latest send carried


class PathsAgreeMachine(RuleBasedStateMachine):
    sessions = Bundle("sessions")

    def __init__(self) -> None:
        super().__init__()
        self._atomic = transaction.atomic()  # one savepoint per example, rolled back in teardown
        self._atomic.__enter__()
        self._travel = time_machine.travel(START, tick=False)
        self._clock = self._travel.start()
        self.now = START
        # PostgreSQL keeps sessions by day (otp.partitions): the days this machine's clock can reach.
        partitions_ensure(now=START, ahead_days=7, back_days=1)
        day_functions_sync()  # the day's functions too: the database path calls them
        self.twins: list[Twin] = []
        self.logical: dict[str, str] = {}  # a world's sessionId -> the twin session's name ("s0", "s1" ...)
        self.by_name: dict[str, TwinSession] = {}
        locmem.outbox.clear()

    def teardown(self) -> None:
        try:
            self._travel.stop()
        finally:
            transaction.set_rollback(True)
            self._atomic.__exit__(None, None, None)
            locmem.outbox.clear()

    @initialize(policies=st.tuples(POLICIES, POLICIES), reviewers=st.tuples(st.booleans(), st.booleans()))
    def create_workspaces(self, policies: tuple[dict, dict], reviewers: tuple[bool, bool]) -> None:
        for policy, reviewer in zip(policies, reviewers, strict=True):
            workspaces, live, test = {}, {}, {}
            for world in WORLDS:
                workspace = WorkspaceFactory(**policy)
                SenderNameFactory(workspace=workspace, name="ZECKTA")
                if reviewer:
                    reviewer_number_add(workspace=workspace, dest=REVIEWER_DEST, code=REVIEWER_CODE)
                with override_settings(WEBHOOK_ALLOWED_HOSTS=[HOOKS_HOST]):
                    webhook_endpoint_create(workspace=workspace, url=f"http://{HOOKS_HOST}/otp", events=Event.values)
                workspaces[world] = workspace
                live[world] = api_client(issue_key(workspace, tps=10_000)[1])
                test[world] = api_client(issue_key(workspace, tps=10_000, test=True)[1])
            self.twins.append(Twin(workspaces, live, test, policy["otp_code_length"]))

    # --- Rules ---------------------------------------------------------------------------------

    @rule(
        target=sessions,
        tenant=st.integers(min_value=0, max_value=1),
        test=st.booleans(),
        dest=st.sampled_from(DESTINATIONS),
        purpose=st.sampled_from(PURPOSES),
        # None: the field left out. A region, a language without texts, a right-to-left one (UCS-2).
        locale=st.sampled_from([None, "fr", "pt-BR", "xx", "ar"]),
    )
    def request(self, tenant: int, test: bool, dest: str, purpose: str, locale: str | None):
        twin = self.twins[tenant]
        clients = twin.test if test else twin.live
        extra = {} if locale is None else {"locale": locale}
        answers = self._both(lambda world: request_otp(clients[world], dest, purpose=purpose, **extra))
        self._same(answers, new_session_ok=True)
        if answers["sql"].status_code != 200:
            return multiple()
        ids = {world: answers[world].json()["data"]["sessionId"] for world in WORLDS}
        if answers["sql"].json()["data"]["reused"]:
            return multiple()  # _same() checked both name the same twin session
        name = f"s{len(self.by_name)}"
        for world in WORLDS:
            self.logical[ids[world]] = name
        self.by_name[name] = TwinSession(tenant=tenant, test=test, dest=dest, ids=ids)
        return name

    # One rule for what is done to a session, so that the mix is chosen here (Hypothesis gives each rule
    # the same chance): mostly verifies, the right code more often than not, and a cancel now and then.
    @rule(name=sessions, action=st.sampled_from(ACTIONS))
    def act(self, name: str, action: str) -> None:
        session = self.by_name[name]
        twin = self.twins[session.tenant]
        clients = twin.test if session.test else twin.live
        ids = session.ids
        if action.startswith("verify"):
            self._deliver(session)  # the user types the code the SMS carried
            codes = {world: self._typed(session, right=action == "verify right", world=world) for world in WORLDS}
            self._same(self._both(lambda world: verify(clients[world], ids[world], codes[world])))
        elif action == "resend":
            self._same(self._both(lambda world: resend(clients[world], ids[world])))
        elif action == "cancel":
            self._same(self._both(lambda world: cancel(clients[world], ids[world])))
        else:
            self._same(self._both(lambda world: clients[world].get(session_url(ids[world]))))

    @rule()
    def deliver_queued_sms(self) -> None:
        """The worker runs every queued send task, in both worlds."""
        for session in self.by_name.values():
            self._deliver(session)

    @rule(seconds=CLOCK_STEPS)
    def advance_clock(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)
        self._clock.move_to(self.now)

    @rule()
    def expiry_sweep(self) -> None:
        otp_sessions_expire()  # both worlds' sessions at once: the invariant compares what it wrote

    # --- The two worlds hold the same ------------------------------------------------------------

    @invariant()
    def databases_agree(self) -> None:
        if self.twins:
            sql, python = (self._state(world) for world in WORLDS)
            for part in sql:
                assert sql[part] == python[part], part

    # --- Helpers -------------------------------------------------------------------------------

    def _clients(self, session: TwinSession) -> dict[str, APIClient]:
        twin = self.twins[session.tenant]
        return twin.test if session.test else twin.live

    @staticmethod
    def _both(call) -> dict:
        answers = {}
        for world in WORLDS:
            with override_settings(OTP_DATABASE_FUNCTIONS=world == "sql"):
                answers[world] = call(world)
        return answers

    def _name(self, session_id: str, *, new_session_ok: bool = False) -> str:
        if session_id in self.logical:
            return self.logical[session_id]
        assert new_session_ok, f"an unknown session {session_id}"
        return "new"

    def _answer(self, response, *, new_session_ok: bool = False) -> tuple:
        body = json.loads(response.content)  # a copy: response.json() is cached and read again
        if isinstance(body.get("data"), dict) and "sessionId" in body["data"]:
            body["data"]["sessionId"] = self._name(body["data"]["sessionId"], new_session_ok=new_session_ok)
        body.pop("requestId", None)
        return response.status_code, body, response.get("Retry-After")

    def _same(self, answers: dict, *, new_session_ok: bool = False) -> None:
        sql, python = (self._answer(answers[world], new_session_ok=new_session_ok) for world in WORLDS)
        assert sql == python
        event(f"{sql[0]} {sql[1].get('code') or sql[1].get('message')}")

    def _deliver(self, session: TwinSession) -> None:
        """Sends each world's queued SMS of the session, as a worker would, and notes the code it carried
        (a test SMS's from the test inbox, a reviewer number's fixed one)."""
        results = {}
        for world in WORLDS:
            message = SmsMessage.objects.filter(session__public_id=session.ids[world]).order_by("-id").first()
            if message is None:  # a reviewer number: nothing is sent, the code is fixed
                session.codes[world] = REVIEWER_CODE
                results[world] = None
                continue
            if session.test:
                inbox = TestInboxMessage.objects.filter(session=message.session_id).order_by("-id").first()
                session.codes[world] = self._code_in(decrypt_inbox_text(bytes(inbox.encrypted_text)), session)
                results[world] = message.status
                continue
            if message.status != SmsMessage.Status.QUEUED:
                results[world] = message.status
                continue
            results[world] = delivery.sms_deliver(message_id=message.pk)
            sent = [sms for sms in locmem.outbox if sms.reference == str(message.public_id)]
            session.codes[world] = self._code_in(sent[0].text, session) if sent else None
        assert results["sql"] == results["python"]
        assert (session.codes["sql"] is None) == (session.codes["python"] is None)

    def _typed(self, session: TwinSession, *, right: bool, world: str) -> str:
        code = session.codes.get(world)
        if code is None:  # never sent: the session died first, and no code changes the answer
            return "0" * self.twins[session.tenant].code_length
        return code if right else wrong_code(code)

    def _code_in(self, text: str, session: TwinSession) -> str:
        length = self.twins[session.tenant].code_length
        return re.search(rf"\b(\d{{{length}}})\b", text).group(1)

    def _state(self, world: str) -> dict:
        """What one world's workspaces hold, with its session ids replaced by the twin sessions' names."""
        workspaces = [twin.workspaces[world] for twin in self.twins]
        tenant_of = {workspace.pk: tenant for tenant, workspace in enumerate(workspaces)}
        sessions = [
            (self._name(str(row.pop("public_id"))), tenant_of[row.pop("workspace_id")], row)
            for row in OtpSession.objects.filter(workspace__in=workspaces)
            .order_by("pk")
            .values(
                "public_id",
                "workspace_id",
                "status",
                "attempts_used",
                "max_attempts",
                "created_at",
                "expires_at",
                "verified_at",
                "resends",
                "resend_available_at",
                "is_test",
                "dest",
                "purpose",
                "locale",
                "message_template",
            )
        ]
        sms = list(
            SmsMessage.objects.filter(workspace__in=workspaces)
            .order_by("pk")
            .values_list(
                "session__public_id", "status", "units", "is_test", "route_name", "created_at", "encoding", "segments"
            )
        )
        # Sorted: the expiry sweep reports sessions that expired at the same instant in either order.
        events = sorted(
            (event_type, self._name(json.loads(body)["data"]["sessionId"]), event_at)
            for event_type, body, event_at in WebhookDelivery.objects.filter(endpoint__workspace__in=workspaces)
            .order_by("pk")
            .values_list("event_type", "body", "event_at")
        )
        per_workspace = [
            {
                "wrong codes": list(
                    WrongCode.objects.filter(workspace=workspace)
                    .order_by("pk")
                    .values_list("dest", "created_at", "is_test")
                ),
                "daily counts": list(DailySmsCount.objects.filter(workspace=workspace).values_list("day", "count")),
                "balance": Workspace.objects.values_list("balance_units", flat=True).get(pk=workspace.pk),
                "ledger": list(
                    LedgerEntry.objects.filter(workspace=workspace).order_by("pk").values_list("delta_units", "reason")
                ),
                "test inbox": TestInboxMessage.objects.filter(workspace=workspace).count(),
            }
            for workspace in workspaces
        ]
        return {
            "sessions": sessions,
            "sms": [(self._name(str(session_id)), *rest) for session_id, *rest in sms],
            "events": events,
            "workspaces": per_workspace,
        }


FUZZ_MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES") or 0)


def _settings() -> settings:
    return settings(
        max_examples=FUZZ_MAX_EXAMPLES or 20,
        stateful_step_count=40,
        deadline=None,
        derandomize=not FUZZ_MAX_EXAMPLES,  # `make test` replays the same sequences every time
        print_blob=bool(FUZZ_MAX_EXAMPLES),
        database=None,
        phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


@pytest.mark.timeout(0 if FUZZ_MAX_EXAMPLES else 600)
def test_the_sql_and_python_versions_answer_alike(db):
    run_state_machine_as_test(PathsAgreeMachine, settings=_settings())
