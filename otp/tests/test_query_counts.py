"""The hot paths stay at a handful of SQL queries.

On PostgreSQL a request and a verify are one call each to a database function (otp.services); the API
key and the sender name come from the per-process caches once warm (zeckta.localcache). The Python
version of the same rules (SQLite, prepaid workspaces) is pinned too. Counts inside the test
transaction include the SAVEPOINT/RELEASE pairs `atomic()` costs there (BEGIN/COMMIT in production).
"""

import pytest
import time_machine
from django.utils import timezone

from otp.tests.helpers import deliver_and_read_code, request_otp, session_url, verify, wrong_code
from zeckta.testing import DEST

pytestmark = pytest.mark.django_db


@pytest.fixture
def warm_api(api):
    # The first calls fill the caches (the key, the sender name, the workspace's webhook subscriptions) and
    # write the key's last_used_at (once a minute): pin what follows.
    request_otp(api, "+233244000001")
    verify(api, "0b7c1f9e-0d5a-4c1e-9a57-3c1a2b9d8e01", "123456")
    return api


@pytest.fixture
def python_path(settings):
    settings.OTP_DATABASE_FUNCTIONS = False


def test_a_new_otp_request_is_one_query(warm_api, django_assert_num_queries):
    with django_assert_num_queries(1):  # otp_request()
        assert request_otp(warm_api, DEST).json()["data"]["reused"] is False


def test_a_reused_otp_request_is_one_query(warm_api, django_assert_num_queries):
    request_otp(warm_api, DEST)
    with django_assert_num_queries(1):
        assert request_otp(warm_api, DEST).json()["data"]["reused"] is True


def test_a_verify_is_one_query_right_or_wrong(warm_api, django_assert_num_queries):
    session_id = request_otp(warm_api, DEST).json()["data"]["sessionId"]
    code = deliver_and_read_code(session_id)
    with django_assert_num_queries(1):  # otp_verify()
        assert verify(warm_api, session_id, wrong_code(code)).status_code == 400
    with django_assert_num_queries(1):
        assert verify(warm_api, session_id, code).status_code == 200


def test_a_session_read_is_one_query(warm_api, django_assert_num_queries):
    session_id = request_otp(warm_api, DEST).json()["data"]["sessionId"]
    with django_assert_num_queries(1):  # the session joined with its SMS
        assert warm_api.get(session_url(session_id)).status_code == 200


def test_the_python_version_of_a_new_request_costs_nine_queries(python_path, warm_api, django_assert_num_queries):
    # SAVEPOINT, advisory lock, pending lookup (with its SMS) FOR UPDATE, destination window, wrong-code
    # budget, INSERT session, daily-cap upsert, INSERT sms, RELEASE
    with django_assert_num_queries(9):
        assert request_otp(warm_api, DEST).status_code == 200
    # SAVEPOINT, advisory lock, pending lookup FOR UPDATE, RELEASE
    with django_assert_num_queries(4):
        assert request_otp(warm_api, DEST).json()["data"]["reused"] is True


def test_the_python_version_of_a_verify_costs_four_queries_and_a_wrong_code_one_more(
    python_path, warm_api, django_assert_num_queries
):
    session_id = request_otp(warm_api, DEST).json()["data"]["sessionId"]
    code = deliver_and_read_code(session_id)
    # SAVEPOINT, session FOR UPDATE, UPDATE session, INSERT wrong code, RELEASE
    with django_assert_num_queries(5):
        assert verify(warm_api, session_id, wrong_code(code)).status_code == 400
    with django_assert_num_queries(4):
        assert verify(warm_api, session_id, code).status_code == 200


def test_a_cancel_is_two_queries(warm_api, django_assert_num_queries):
    session_id = request_otp(warm_api, DEST).json()["data"]["sessionId"]
    with django_assert_num_queries(2):  # the conditional UPDATE, then the session view
        assert warm_api.post(f"{session_url(session_id)}/cancel", {}, format="json").status_code == 200


def test_a_transaction_bound_verify_is_one_query_with_its_transaction_and_two_without(
    warm_api, django_assert_num_queries
):
    payment = {"amount": "125.50", "currency": "GHS", "payee": "Acme Shop"}
    session_id = request_otp(warm_api, DEST, purpose="TRANSACTION", transaction=payment).json()["data"]["sessionId"]
    code = deliver_and_read_code(session_id)
    with django_assert_num_queries(1):
        assert verify(warm_api, session_id, wrong_code(code), transaction=payment).status_code == 400
    with django_assert_num_queries(2):  # TRANSACTION_NEEDED, then the digest over the session's transaction
        assert verify(warm_api, session_id, code).status_code == 200


def test_a_resend_costs_a_bounded_number_of_queries(warm_api, django_assert_num_queries):
    """Not a hot path (a cooldown of 30 s or more per session), but it must not grow with the history."""
    session_id = request_otp(warm_api, DEST).json()["data"]["sessionId"]
    deliver_and_read_code(session_id)  # nothing left to supersede
    with time_machine.travel(timezone.now() + timezone.timedelta(seconds=31), tick=False):
        # dest lookup, SAVEPOINT, advisory lock, session FOR UPDATE, destination window, wrong-code budget,
        # SMS left to supersede, UPDATE session, daily-cap upsert, INSERT sms, RELEASE
        with django_assert_num_queries(11):
            assert warm_api.post(f"{session_url(session_id)}/resend", {}, format="json").status_code == 200
