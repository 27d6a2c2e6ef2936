"""A receiver that trickles its answer cannot hold a worker: a webhook call ends WEBHOOK_TIMEOUT_SECONDS after
it began, in all, and the attempt is recorded as a time-out and retried.

The elapsed-time bounds here are the behaviour under test (a correctness bound, not a benchmark), kept
generous for a loaded machine: a call that is not cut takes minutes.
"""

import time

import pytest

from webhooks.delivery import webhook_deliver
from webhooks.models import WebhookDelivery
from webhooks.tests.factories import endpoint_for, record_event
from zeckta.tests.trickle import TrickleServer

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(60)]  # what the bug looks like: a hang

TIMEOUT_SECONDS = 1.0
BOUND_SECONDS = 8.0  # the call must end well before this; uncut, the trickle lasts over an hour


@pytest.fixture
def trickling(settings):
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    settings.WEBHOOK_TIMEOUT_SECONDS = TIMEOUT_SECONDS
    server = TrickleServer(interval=0.3).start()
    yield server
    server.stop()


@pytest.mark.parametrize("body_first", [False, True], ids=["headers-trickle", "body-trickles"])
def test_a_trickling_receiver_is_cut_at_the_deadline_and_the_attempt_retried_as_a_time_out(
    workspace, trickling, body_first
):
    trickling.body_first = body_first
    endpoint_for(workspace, trickling.url)
    [delivery] = record_event(workspace)

    started = time.monotonic()
    status = webhook_deliver(delivery_id=delivery.pk)
    elapsed = time.monotonic() - started

    assert elapsed < BOUND_SECONDS
    assert trickling.connections == 1
    delivery.refresh_from_db()
    if body_first:
        # The status came in time and is a 2xx: accepted, whatever the body does afterwards.
        assert (status, delivery.status, delivery.last_status_code) == ("delivered", "delivered", 200)
        return
    assert status == delivery.status == WebhookDelivery.Status.PENDING
    assert (delivery.attempts, delivery.last_status_code) == (1, None)
    assert delivery.last_error == "no answer within 1s"
    assert delivery.next_attempt_at > delivery.updated_at  # a retry is scheduled, as for any time-out
    assert trickling.hung_up.wait(timeout=5)  # the connection was dropped, not left to trickle


def test_a_trickling_error_body_is_cut_at_the_deadline_with_its_status_kept(workspace, trickling):
    """A non-2xx answer's body is read for the admin's last error: that read is under the deadline too."""
    trickling.body_first, trickling.status = True, 503
    endpoint_for(workspace, trickling.url)
    [delivery] = record_event(workspace)

    started = time.monotonic()
    status = webhook_deliver(delivery_id=delivery.pk)
    elapsed = time.monotonic() - started

    assert elapsed < BOUND_SECONDS
    delivery.refresh_from_db()
    assert (status, delivery.status, delivery.last_status_code) == ("pending", "pending", 503)
    assert delivery.last_error.startswith("HTTP 503")
