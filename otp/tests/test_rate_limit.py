import threading
import time

import pytest
import redis
from django.conf import settings as django_settings

from otp.models import OtpSession, SmsMessage
from otp.tests.helpers import deliver_and_read_code, request_otp, session_url, verify
from workspaces.ratelimit import check_rate
from workspaces.tests.factories import issue_key
from zeckta.testing import DEST, api_client

pytestmark = pytest.mark.django_db


def at_the_start_of_a_second() -> None:
    """Waits for a fresh one-second window, so a short burst is counted in a single window."""
    time.sleep(1 - time.time() % 1 + 0.01)


def burst(api, count: int) -> list:
    at_the_start_of_a_second()
    return [api.get(session_url("00000000-0000-4000-8000-000000000000")) for _ in range(count)]


def test_every_authenticated_response_carries_the_rate_headers(workspace, sender):
    api = api_client(issue_key(workspace, tps=5)[1])
    at_the_start_of_a_second()
    ok = request_otp(api, DEST)
    error = api.post("/v1/messaging/otp/verify", {}, format="json")

    for response, remaining in ((ok, "4"), (error, "3")):
        assert response["X-RateLimit-Limit"] == "5"
        assert response["X-RateLimit-Remaining"] == remaining
        assert abs(int(response["X-RateLimit-Reset"]) - time.time()) <= 2


def test_the_nth_call_passes_and_the_next_is_refused_until_the_window_reopens(workspace, sender):
    api = api_client(issue_key(workspace, tps=3)[1])
    responses = burst(api, 4)

    assert [r.status_code for r in responses] == [404, 404, 404, 429]
    refused = responses[-1]
    assert refused.json()["code"] == "RATE_LIMITED" and refused.json()["success"] is False
    assert refused["Retry-After"] == "1" and refused["X-RateLimit-Remaining"] == "0"
    time.sleep(max(int(refused["X-RateLimit-Reset"]) - time.time(), 0) + 0.01)
    assert api.get(session_url("00000000-0000-4000-8000-000000000000")).status_code == 404


def test_a_key_that_keeps_hammering_gets_a_growing_cool_down(workspace, sender):
    api_key, raw = issue_key(workspace, tps=1)
    api = api_client(raw)
    responses = burst(api, 5)  # 1 allowed, then 3 refusals start a cool-down
    assert [r.status_code for r in responses] == [404, 429, 429, 429, 429]
    first_cooldown = int(responses[3]["Retry-After"])
    assert first_cooldown == 2 and 1 <= int(responses[4]["Retry-After"]) <= 2

    # The cool-down ends (simulated by removing its key), the key hammers again: the next one is longer.
    redis.Redis.from_url(django_settings.REDIS_URL).delete(f"zeckta:rl:{api_key.pk}:block")
    responses = burst(api, 4)
    assert responses[0].status_code == 404 and int(responses[3]["Retry-After"]) == 4


def test_the_limit_holds_under_concurrency_and_counters_always_expire(workspace):
    api_key, _ = issue_key(workspace, tps=20)
    barrier = threading.Barrier(50)
    decisions = []

    def call():
        barrier.wait()
        decisions.append(check_rate(key_id=api_key.pk, limit=20))

    at_the_start_of_a_second()
    threads = [threading.Thread(target=call) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    windows = {d.reset_at for d in decisions}
    allowed = sum(d.allowed for d in decisions)
    assert allowed == 20 * len(windows)  # exactly the limit per one-second window, however they fell
    client = redis.Redis.from_url(django_settings.REDIS_URL)
    keys = list(client.scan_iter(f"zeckta:rl:{api_key.pk}:*"))
    assert keys and all(client.ttl(key) > 0 for key in keys)


def test_each_key_has_its_own_rate(workspace, sender):
    first = api_client(issue_key(workspace, tps=1)[1])
    second = api_client(issue_key(workspace, tps=1)[1])
    at_the_start_of_a_second()
    assert request_otp(first, DEST).status_code == 200
    assert request_otp(second, "+233244123456").status_code == 200
    assert request_otp(first, "+233244123457").status_code == 429


@pytest.mark.timeout(10)
def test_with_redis_down_the_request_endpoint_fails_closed_and_verify_still_works(api, settings):
    session_id = request_otp(api, DEST).json()["data"]["sessionId"]
    code = deliver_and_read_code(session_id)
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there: connection refused

    refused = request_otp(api, "+233244123456")
    assert refused.status_code == 503
    assert refused.json()["code"] == "SERVICE_UNAVAILABLE" and refused.json()["data"] is None
    assert OtpSession.objects.count() == 1 and SmsMessage.objects.count() == 1
    assert verify(api, session_id, code).status_code == 200
