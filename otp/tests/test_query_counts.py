"""The hot paths stay at a handful of SQL queries. Counts include the SAVEPOINT/RELEASE pairs that
`atomic()` costs inside the test transaction (in production the outer atomic is BEGIN/COMMIT)."""

import pytest

from otp.tests.helpers import deliver_and_read_code, request_otp, session_url, verify, wrong_code
from zeckta.testing import DEST

pytestmark = pytest.mark.django_db


@pytest.fixture
def warm_api(api):
    # The first call of a minute writes the key's last_used_at; pin the steady state after it.
    request_otp(api, "+233244000001")
    return api


def test_a_new_otp_request_costs_eleven_queries(warm_api, django_assert_num_queries):
    # key+workspace, sender, SAVEPOINT, advisory lock, pending lookup (with its SMS) FOR UPDATE, destination
    # window, wrong-code budget, INSERT session, daily-cap upsert, INSERT sms, RELEASE
    with django_assert_num_queries(11):
        assert request_otp(warm_api, DEST).status_code == 200


def test_a_reused_otp_request_costs_six_queries(warm_api, django_assert_num_queries):
    request_otp(warm_api, DEST)
    # key+workspace, sender, SAVEPOINT, advisory lock, pending lookup FOR UPDATE, RELEASE
    with django_assert_num_queries(6):
        assert request_otp(warm_api, DEST).json()["data"]["reused"] is True


def test_a_verify_costs_five_queries_and_a_wrong_code_one_more(warm_api, django_assert_num_queries):
    session_id = request_otp(warm_api, DEST).json()["data"]["sessionId"]
    code = deliver_and_read_code(session_id)
    # key+workspace, SAVEPOINT, session FOR UPDATE, UPDATE session, INSERT wrong code, RELEASE
    with django_assert_num_queries(6):
        assert verify(warm_api, session_id, wrong_code(code)).status_code == 400
    # key+workspace, SAVEPOINT, session FOR UPDATE, UPDATE session, RELEASE
    with django_assert_num_queries(5):
        assert verify(warm_api, session_id, code).status_code == 200


def test_a_session_read_costs_two_queries(warm_api, django_assert_num_queries):
    session_id = request_otp(warm_api, DEST).json()["data"]["sessionId"]
    with django_assert_num_queries(2):  # key+workspace, session joined with its SMS
        assert warm_api.get(session_url(session_id)).status_code == 200
