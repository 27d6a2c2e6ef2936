"""The functions of each day (otp.day_functions): a request and a verify call the functions that name their
day's partitions, and so lock those days only; they answer as the parent's functions do; beat and the purge
keep them with the partitions; at the edges of a day, and for what the rewrite does not know, the parent's
are called.
"""

import uuid
from datetime import UTC, datetime, time, timedelta

import pytest
import time_machine
from django.db import connection, transaction
from django.utils import timezone

from otp import day_functions, services
from otp.day_functions import (
    UnknownStatement,
    _day_text,
    day_functions_sync,
    request_function,
    verify_function,
)
from otp.expiry import otp_sessions_purge
from otp.partitions import partitions_ensure, partitions_of
from otp.tests.helpers import deliver_and_read_code, request_otp, verify, wrong_code
from otp.tests.test_partitions import _partitions_locked, _restore_partitions
from workspaces.tests.factories import issue_key
from zeckta.testing import DEST, api_client, run_together

pytestmark = pytest.mark.skipif(connection.vendor != "postgresql", reason="partitions are PostgreSQL's")


def _functions() -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT proname FROM pg_proc WHERE proname ~ '^otp_(request|verify)_p[0-9]{8}$'")
        return {name for (name,) in cursor.fetchall()}


@pytest.fixture
def called(monkeypatch) -> list[str]:
    """The names of the database functions otp.services calls, in order (the calls go through unchanged)."""
    names: list[str] = []
    call = services._call_function

    def recorded(name: str, **kwargs):
        names.append(name)
        return call(name, **kwargs)

    monkeypatch.setattr(services, "_call_function", recorded)
    return names


@pytest.fixture
def midday():
    """Today at noon, the clock running: a test that follows a session for minutes stays inside the day (near
    midnight its calls would rightly go to the parents' functions: request_function, verify_function)."""
    with time_machine.travel(datetime.combine(timezone.now().date(), time(12), tzinfo=UTC), tick=True):
        yield


def _day(at: datetime) -> str:
    return f"{at.astimezone(UTC):%Y%m%d}"


@pytest.mark.django_db
def test_every_day_with_its_partitions_has_its_functions_and_a_sync_changes_nothing_more():
    days = {name.rsplit("_p", 1)[1] for name, _, _ in partitions_of("otp_otpsession")}
    functions = _functions()
    # A request's reads the day and the one before: the oldest day has a verify function only.
    assert {f"otp_verify_p{day}" for day in days} <= functions
    assert len({f"otp_request_p{day}" for day in days} - functions) == 1
    assert day_functions_sync() == (0, 0)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("otp_path", ["sql"], indirect=True)
def test_a_request_and_a_verify_call_their_days_functions_and_lock_only_those_days(
    workspace, sender, otp_path, called, midday
):
    workspace.fraud_guard_mode = "off"
    workspace.save()
    api = api_client(issue_key(workspace, name="many", tps=10_000)[1])
    request_otp(api, "+233244000001")  # warm: caches, the key's last use
    today = _day(timezone.now())
    for number in range(7):  # past PL/pgSQL's first five custom plans: the cached generic plans are what count
        dest = f"+23324466{number:04d}"
        called.clear()
        with transaction.atomic():
            session_id = request_otp(api, dest).json()["data"]["sessionId"]
            new = _partitions_locked()
        with transaction.atomic():
            assert request_otp(api, dest).json()["data"]["reused"] is True
            reused = _partitions_locked()
        code = deliver_and_read_code(session_id)
        with transaction.atomic():
            assert verify(api, session_id, wrong_code(code)).status_code == 400
            wrong = _partitions_locked()
        assert verify(api, session_id, code).status_code == 200
    day = [f"otp_request_p{today}", f"otp_verify_p{today}"]
    assert called == [day[0], day[0], day[1], day[1]]  # new, reused, wrong, right
    # The parent's functions locked every day of every table they name (~40 each): these, the days they read
    # and the day a row went to.
    assert set(new) == {"otp_otpsession", "otp_smsmessage", "otp_wrongcode"}
    for locked in (new, reused, wrong):
        for table, names in locked.items():
            assert 1 <= len(names) <= 2, (table, names)


@pytest.mark.django_db
@pytest.mark.parametrize("otp_path", ["sql"], indirect=True)
def test_the_days_functions_answer_as_the_parents_do(api, otp_path, called, midday):
    """The same steps through both: reuse, wrong codes, an expired session replaced, then approved."""
    answers = {}
    for through in ("day", "parent"):
        if through == "parent":
            day_functions._found.clear()
            day_functions._found[timezone.now().date()] = 1e18  # "missing" until long after the test
            day_functions._found[timezone.now().date() - timedelta(days=1)] = 1e18
        dest = "+233244770001" if through == "day" else "+233244770002"
        steps: list = []
        called.clear()
        first = request_otp(api, dest).json()["data"]
        again = request_otp(api, dest).json()["data"]
        steps.append((first["reused"], again["reused"], first["sessionId"] == again["sessionId"]))
        code = deliver_and_read_code(first["sessionId"])
        for _ in range(2):
            response = verify(api, first["sessionId"], wrong_code(code))
            steps.append((response.status_code, response.json()))
        with time_machine.travel(timezone.now() + timedelta(seconds=301), tick=False):
            replaced = request_otp(api, dest).json()["data"]  # the pending one expired: replaced
            steps.append((replaced["reused"], replaced["sessionId"] == first["sessionId"]))
            response = verify(api, first["sessionId"], code)
            steps.append((response.status_code, response.json()))
            code = deliver_and_read_code(replaced["sessionId"])
            response = verify(api, replaced["sessionId"], code)
            steps.append((response.status_code, response.json()))
        assert {name.endswith(_day(timezone.now())) for name in called} == {through == "day"}
        answers[through] = steps
    day_functions._found.clear()
    for steps in answers.values():
        for step in steps:
            if isinstance(step[-1], dict):  # each answer's own request id
                step[-1].pop("requestId", None)
                step[-1].get("data", {}).pop("sessionId", None)
    assert answers["day"] == answers["parent"]


@pytest.mark.django_db
def test_a_session_from_yesterday_is_replaced_through_todays_function(api, called):
    """The replaced session's UPDATE looks in today's partition, then in yesterday's: it is there."""
    midnight = datetime.combine(timezone.now().date(), time(), tzinfo=UTC)
    with time_machine.travel(midnight - timedelta(minutes=2), tick=False):
        first = request_otp(api, DEST).json()["data"]["sessionId"]  # valid 300 s: expired at +3 min
    called.clear()
    with time_machine.travel(midnight + timedelta(minutes=4), tick=False):
        second = request_otp(api, DEST).json()["data"]
    assert called == [f"otp_request_p{_day(midnight)}"]
    assert second["reused"] is False and second["sessionId"] != first
    with connection.cursor() as cursor:
        cursor.execute("SELECT status FROM otp_otpsession WHERE public_id = %s", [first])
        assert cursor.fetchone()[0] == "EXPIRED"


def test_the_parents_functions_serve_the_edges_of_a_day():
    day = datetime(2026, 12, 7, tzinfo=UTC)
    day_functions._found.update({day.date(): True, day.date() - timedelta(days=1): True})
    try:
        assert request_function(now=day + timedelta(hours=12), windows=(timedelta(hours=1),)) == "otp_request_p20261207"
        # The last minute (a row may be a minute ahead: the clocks), and a window longer than a day.
        assert request_function(now=day + timedelta(hours=23, minutes=59, seconds=1), windows=()) == "otp_request"
        assert request_function(now=day + timedelta(hours=12), windows=(timedelta(days=2),)) == "otp_request"

        def v7(at: datetime) -> uuid.UUID:
            return uuid.UUID(int=(int(at.timestamp() * 1000) << 80) | (0x7 << 76) | (0x2 << 62))

        noon = day + timedelta(hours=12)
        assert verify_function(session_id=v7(noon), now=noon) == "otp_verify_p20261207"
        assert verify_function(session_id=v7(noon), now=noon + timedelta(hours=20)) == "otp_verify_p20261207"
        assert verify_function(session_id=v7(day + timedelta(seconds=30)), now=noon) == "otp_verify"
        assert verify_function(session_id=v7(noon - timedelta(days=2)), now=noon) == "otp_verify"  # may be purged
        assert verify_function(session_id=uuid.uuid4(), now=noon) == "otp_verify"
    finally:
        day_functions._found.clear()


@pytest.mark.django_db(transaction=True)
def test_the_purge_and_beat_keep_the_functions_with_their_partitions():
    now = timezone.now()
    old = now - timedelta(days=40)
    try:
        partitions_ensure(now=old, ahead_days=0, back_days=1)
        day_functions_sync()
        assert {f"otp_verify_p{_day(old)}", f"otp_request_p{_day(old)}"} <= _functions()
        otp_sessions_purge()
        assert not {name for name in _functions() if name.endswith(_day(old))}
        # Yesterday's and today's partitions stay whatever the retention: today's requests read both days,
        # and yesterday's sessions are verified through their day's function.
        otp_sessions_purge(older_than_days=0)
        yesterday = now - timedelta(days=1)
        assert {f"otp_request_p{_day(now)}", f"otp_verify_p{_day(now)}", f"otp_verify_p{_day(yesterday)}"} <= (
            _functions()
        )
        for day in (yesterday, now):
            assert any(name.endswith(_day(day)) for name, _, _ in partitions_of("otp_otpsession"))
    finally:
        _restore_partitions()


@pytest.mark.django_db(transaction=True)
def test_a_statement_the_rewrite_does_not_know_leaves_the_days_functions_right_only_not_cheaper(api, called):
    """A parent's function with a statement `_day_text` cannot rewrite (here a DELETE): each day's copy runs the
    parent's statements under the day's name, so callers that know the name keep working."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_get_functiondef('otp_verify'::regproc)")
        original = cursor.fetchone()[0]
    changed = original.replace("BEGIN\n", "BEGIN\n    DELETE FROM otp_otpsession WHERE false;\n", 1)
    assert changed != original
    with pytest.raises(UnknownStatement):
        _day_text(changed, function="otp_verify", day=timezone.now().date(), columns={})
    try:
        with connection.cursor() as cursor:
            cursor.execute(changed)
        assert day_functions_sync()[0] >= 1
        today = _day(timezone.now())
        with connection.cursor() as cursor:
            cursor.execute("SELECT prosrc FROM pg_proc WHERE proname = %s", [f"otp_verify_p{today}"])
            assert "DELETE FROM otp_otpsession WHERE false" in cursor.fetchone()[0]  # the parent's text
        session_id = request_otp(api, DEST).json()["data"]["sessionId"]
        code = deliver_and_read_code(session_id)
        assert verify(api, session_id, code).json()["data"]["status"] == "APPROVED"
        assert called[-1] == f"otp_verify_p{today}"
    finally:
        with connection.cursor() as cursor:
            cursor.execute(original)
        day_functions_sync()
    with connection.cursor() as cursor:
        cursor.execute("SELECT prosrc FROM pg_proc WHERE proname = %s", [f"otp_verify_p{_day(timezone.now())}"])
        assert f"otp_otpsession_p{_day(timezone.now())}" in cursor.fetchone()[0]  # rewritten again


@pytest.mark.django_db(transaction=True)
def test_two_syncs_at_once_remake_stale_functions_without_failing():
    """Beat's hourly sync and a deploy's migrate (or the tests' flush and a worker's beat) at once: both find the
    same copies stale and remake them; neither fails, and each copy ends up current."""
    for _ in range(3):
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT format('COMMENT ON FUNCTION %s IS %L', p.oid::regprocedure, 'stale') FROM pg_proc p"
                " WHERE p.proname ~ '^otp_(request|verify)_p[0-9]{8}$'"
            )
            for (statement,) in cursor.fetchall():
                cursor.execute(statement)
        results = run_together(2, lambda _: day_functions_sync())
        assert sum(made for made, _ in results) >= 2
        assert day_functions_sync() == (0, 0)
