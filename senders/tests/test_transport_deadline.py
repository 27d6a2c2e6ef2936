"""A provider (or anything between) that trickles its answer cannot hold the SMS worker: the configured
time-out bounds the whole call, not each read, and the send is a transient failure, retried with the same
reference as after any time-out.

The elapsed-time bound is the behaviour under test (a correctness bound, not a benchmark), generous for a
loaded machine: a call that is not cut takes over an hour.
"""

import time

import pytest

from senders.gateways.base import TransientGatewayError
from senders.gateways.transport import post
from senders.tests.fake_gateway import FakeGateway
from zeckta.tests.trickle import TrickleServer

pytestmark = pytest.mark.timeout(60)  # what the bug looks like: a hang

BOUND_SECONDS = 8.0


@pytest.mark.parametrize("body_first", [False, True], ids=["headers-trickle", "body-trickles"])
def test_a_trickling_provider_is_cut_at_the_time_out_as_a_transient_failure(body_first):
    server = TrickleServer(interval=0.3, body_first=body_first).start()
    try:
        started = time.monotonic()
        with pytest.raises(TransientGatewayError) as raised:
            post(server.url, body=b'{"to": "+233202007745"}', headers={"Content-Type": "application/json"}, timeout=1.0)
        elapsed = time.monotonic() - started
        assert server.hung_up.wait(timeout=5)  # the connection was dropped, not left to trickle
    finally:
        server.stop()

    assert elapsed < BOUND_SECONDS
    assert str(raised.value) == "provider timed out after 1.0s"


def test_the_calls_after_a_cut_one_go_through():
    server, gateway = TrickleServer(interval=0.3).start(), FakeGateway().start()
    try:
        with pytest.raises(TransientGatewayError):
            post(server.url, body=b"{}", headers={}, timeout=0.5)
        time.sleep(0.6)  # past the first call's deadline: its timer must not touch the next call's socket

        answers = [
            post(gateway.url, body=b"{}", headers={"Content-Type": "application/json"}, timeout=2.0) for _ in range(3)
        ]  # the same kept-alive connection, reused
    finally:
        server.stop()
        gateway.stop()

    assert all(answer.status for answer in answers)
