import re
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import time_machine
from django.conf import settings as django_settings
from redis.crc import key_slot

from otp.models import OtpSession, SmsMessage
from otp.tests.helpers import deliver_and_read_code, request_otp, session_url, verify
from workspaces import ratelimit
from workspaces.ratelimit import check_rate
from workspaces.tests.factories import issue_key
from zeckta.testing import DEST, api_client

pytestmark = pytest.mark.django_db


NOW = 1_796_205_600  # unix seconds: the limiter counts in windows of the service's clock, frozen here


@pytest.fixture
def clock() -> Iterator[Any]:
    """The wall clock stopped at NOW: a burst falls in one window however the test is scheduled."""
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


def burst(api, count: int) -> list:
    return [api.get(session_url("00000000-0000-4000-8000-000000000000")) for _ in range(count)]


def test_every_authenticated_response_carries_the_rate_headers(workspace, sender, clock):
    api = api_client(issue_key(workspace, tps=5)[1])
    ok = request_otp(api, DEST)
    error = api.post("/v1/messaging/otp/verify", {}, format="json")

    for response, remaining in ((ok, "4"), (error, "3")):
        assert response["X-RateLimit-Limit"] == "5"
        assert response["X-RateLimit-Remaining"] == remaining
        assert response["X-RateLimit-Reset"] == str(NOW + 1)


def test_the_nth_call_passes_and_the_next_is_refused_until_the_window_reopens(workspace, sender, clock):
    api = api_client(issue_key(workspace, tps=3)[1])
    responses = burst(api, 4)

    assert [r.status_code for r in responses] == [404, 404, 404, 429]
    refused = responses[-1]
    assert refused.json()["code"] == "RATE_LIMITED" and refused.json()["success"] is False
    assert refused["Retry-After"] == "1" and refused["X-RateLimit-Remaining"] == "0"
    assert refused["X-RateLimit-Reset"] == str(NOW + 1)
    clock.move_to(int(refused["X-RateLimit-Reset"]))
    assert api.get(session_url("00000000-0000-4000-8000-000000000000")).status_code == 404


def test_a_key_that_keeps_hammering_gets_a_growing_cool_down(workspace, sender, clock):
    api_key, raw = issue_key(workspace, tps=1)
    api = api_client(raw)
    responses = burst(api, 5)  # 1 allowed, then 3 refusals start a cool-down
    assert [r.status_code for r in responses] == [404, 429, 429, 429, 429]
    first_cooldown = int(responses[3]["Retry-After"])
    assert first_cooldown == 2 and 1 <= int(responses[4]["Retry-After"]) <= 2
    # During a cool-down the window reopens when the cool-down ends: both headers say so.
    for refused in responses[3:]:
        assert int(refused["X-RateLimit-Reset"]) == NOW + int(refused["Retry-After"])

    # The cool-down ends (simulated by removing its key), the key hammers again: the next one is longer.
    redis.Redis.from_url(django_settings.REDIS_URL).delete(ratelimit.redis_keys(api_key.pk)[2])
    clock.shift(1)
    responses = burst(api, 4)
    assert responses[0].status_code == 404 and int(responses[3]["Retry-After"]) == 4


def test_the_limit_holds_under_concurrency_and_counters_always_expire(workspace, clock):
    api_key, _ = issue_key(workspace, tps=20)
    barrier = threading.Barrier(50)
    decisions = []

    def call():
        barrier.wait()
        decisions.append(check_rate(key_id=api_key.pk, limit=20))

    threads = [threading.Thread(target=call) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sum(d.allowed for d in decisions) == 20  # exactly the limit in the one window they all fell in
    client = redis.Redis.from_url(django_settings.REDIS_URL)
    keys = list(client.scan_iter(f"zeckta:rl:{{{api_key.pk}}}:*"))
    assert keys and all(client.ttl(key) > 0 for key in keys)


def test_each_key_has_its_own_rate(workspace, sender, clock):
    first = api_client(issue_key(workspace, tps=1)[1])
    second = api_client(issue_key(workspace, tps=1)[1])
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


def test_the_script_declares_every_key_it_touches_and_they_share_one_cluster_slot():
    """Redis Cluster runs a script only on the node of its KEYS: an undeclared key may live elsewhere."""
    calls = re.findall(r"redis\.call\('(\w+)'(?:, ([^,)]+))?", ratelimit.SCRIPT)
    assert calls and all(key.startswith("KEYS[") for command, key in calls if command != "TIME"), calls
    assert len({key_slot(key.encode()) for key in ratelimit.redis_keys(42)}) == 1


def test_a_busy_keys_calls_are_leased_yet_the_limit_holds_exactly_across_processes(workspace, clock):
    """Two limiters stand for two web processes: each takes limit/64 calls per round trip to Redis, and
    between them exactly `limit` calls pass in the second, however the calls interleave."""
    api_key, _ = issue_key(workspace, tps=640)
    assert ratelimit.lease_size(640) == 10 and ratelimit.lease_size(127) == 1
    first, second = (
        ratelimit.RedisRateLimiter(django_settings.REDIS_URL),
        ratelimit.RedisRateLimiter(django_settings.REDIS_URL),
    )

    decision = first.check(key_id=api_key.pk, limit=640)
    window = redis.Redis.from_url(django_settings.REDIS_URL).hgetall(ratelimit.redis_keys(api_key.pk)[0])
    assert int(window[b"c"]) == 10  # one round trip granted ten calls to this process
    assert (decision.allowed, decision.remaining) == (True, 639)
    assert first.check(key_id=api_key.pk, limit=640).remaining == 638  # spent locally, counted down all the same

    decisions = [limiter.check(key_id=api_key.pk, limit=640) for _ in range(400) for limiter in (first, second)]
    assert sum(d.allowed for d in decisions) == 640 - 2
    assert decisions[-1].allowed is False and decisions[-1].retry_after == 1

    clock.shift(1)  # a new second: leases of the last one are void, the key has its whole rate again
    assert first.check(key_id=api_key.pk, limit=640).remaining == 639


def test_a_call_that_read_the_clock_just_before_the_second_turned_counts_in_the_newer_window(workspace):
    """Web processes read the clock before they ask Redis: a call stamped with second S can arrive after
    another process opened window S+1. It counts there; reopening S would start S+1 from zero again."""
    api_key, _ = issue_key(workspace, tps=2)
    limiter = ratelimit.RedisRateLimiter(django_settings.REDIS_URL)

    with time_machine.travel(NOW + 1, tick=False):
        assert limiter.check(key_id=api_key.pk, limit=2).allowed  # window NOW + 1 opens
    with time_machine.travel(NOW, tick=False):
        late = limiter.check(key_id=api_key.pk, limit=2)  # stamped NOW, arriving after it
    with time_machine.travel(NOW + 1, tick=False):
        refused = limiter.check(key_id=api_key.pk, limit=2)

    assert (late.allowed, late.reset_at) == (True, NOW + 2)  # counted in the newer window
    assert refused.allowed is False  # that window's two calls are spent
