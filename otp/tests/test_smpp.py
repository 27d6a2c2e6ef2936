"""SMPP routes against a local SMSC built from smpplib's PDUs: the bind, submits and their answers, delivery
receipts on the bind, throttling, a refused bind, and a connection dropped mid-submit."""

import threading
from collections.abc import Iterator

import pytest
import smpplib.consts

from otp.delivery import SmsRetryLater, sms_deliver
from otp.models import SmsAttempt, SmsMessage
from otp.receipts import receipts_apply
from otp.tests.helpers import request_otp, session_url
from senders.models import Route
from senders.routes import route_create, route_settings
from senders.smpp_bind import SmppBind
from senders.tests.fake_smsc import PASSWORD, SYSTEM_ID, FakeSmsc, Submit
from zeckta.testing import DEST, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]


@pytest.fixture
def smsc() -> Iterator[FakeSmsc]:
    fake = FakeSmsc().start()
    yield fake
    fake.stop()


def smpp_route(smsc: FakeSmsc, *, password: str = PASSWORD) -> Route:
    return route_create(
        name="smsc",
        backend="smpp",
        values={
            "host": "127.0.0.1",
            "port": str(smsc.port),
            "system_id": SYSTEM_ID,
            "password": password,
            "timeout": "3",
        },
    )


@pytest.fixture
def bind_for() -> Iterator:
    """Runs a route's bind loop in a thread (as `manage.py smpp_bind` would) until the test ends."""
    binds: list[tuple[SmppBind, threading.Thread]] = []

    def start(route: Route) -> SmppBind:
        key = str(route.public_id)
        bind = SmppBind(
            route_key=key,
            route_name=route.name,
            config=route_settings(route),
            on_receipts=lambda receipts: receipts_apply(route_key=key, receipts=receipts),
        )
        thread = threading.Thread(target=bind.run, kwargs={"poll_seconds": 0.05}, daemon=True)
        thread.start()
        binds.append((bind, thread))
        return bind

    yield start
    for bind, thread in binds:
        bind.stop()
        thread.join(timeout=10)


def deliver(message: SmsMessage) -> str:
    return sms_deliver(message_id=message.pk)


def status_of(api, session_id: str) -> str:
    return api.get(session_url(session_id)).json()["data"]["delivery"]["status"]


def test_an_sms_is_submitted_on_the_bind_and_its_receipt_marks_it_delivered(api, smsc, bind_for):
    route = smpp_route(smsc)
    bind_for(route)
    smsc.answer(Submit(receipt="DELIVRD"))
    session_id = request_otp(api, DEST).json()["data"]["sessionId"]

    assert deliver(SmsMessage.objects.get()) == "sent"

    [submit] = smsc.submits
    assert (submit.destination_addr, submit.source_addr) == (DEST.lstrip("+"), "ZECKTA")
    assert submit.registered_delivery == smpplib.consts.SMPP_SMSC_DELIVERY_RECEIPT_BOTH
    assert SmsAttempt.objects.get().provider_message_id == "smsc-0001"
    assert wait_for(lambda: status_of(api, session_id) == "delivered", timeout=10)


def test_a_long_ucs2_text_goes_in_parts_with_a_udh(api, smsc, bind_for):
    bind_for(smpp_route(smsc))
    request_otp(api, DEST, messageTemplate="Ваш код <OTP>. " + "Не сообщайте его никому. " * 5)

    assert deliver(SmsMessage.objects.get()) == "sent"

    assert len(smsc.submits) >= 2
    assert {s.data_coding for s in smsc.submits} == {smpplib.consts.SMPP_ENCODING_ISO10646}
    assert all(s.esm_class & smpplib.consts.SMPP_GSMFEAT_UDHI for s in smsc.submits)
    assert [s.short_message[:3] for s in smsc.submits] == [b"\x05\x00\x03"] * len(smsc.submits)


def test_throttling_is_transient_and_the_retry_carries_the_same_code(api, smsc, bind_for):
    bind_for(smpp_route(smsc))
    smsc.answer(Submit(status=smpplib.consts.SMPP_ESME_RTHROTTLED), Submit())
    request_otp(api, DEST)
    message = SmsMessage.objects.get()

    with pytest.raises(SmsRetryLater):
        deliver(message)
    assert deliver(message) == "sent"

    assert [a.error_code for a in SmsAttempt.objects.order_by("started_at", "pk")] == ["0x58", ""]
    assert len({s.short_message for s in smsc.submits}) == 1


def test_a_refused_bind_is_retried_and_sends_nothing_meanwhile(api, smsc, bind_for):
    bind_for(smpp_route(smsc, password="wrong"))
    request_otp(api, DEST)

    with pytest.raises(SmsRetryLater):
        deliver(SmsMessage.objects.get())  # no bind: the worker's wait runs out, a transient failure

    assert wait_for(lambda: smsc.refused_binds >= 2, timeout=10)  # it keeps trying, with a backoff
    assert smsc.submits == [] and smsc.binds == 0


def test_a_connection_dropped_mid_submit_is_retried_and_receipts_come_after_the_reconnect(api, smsc, bind_for):
    bind_for(smpp_route(smsc))
    smsc.answer(Submit(drop=True), Submit())
    session_id = request_otp(api, DEST).json()["data"]["sessionId"]
    message = SmsMessage.objects.get()

    with pytest.raises(SmsRetryLater):
        deliver(message)  # the SMSC took the PDU and hung up: the worker hears "connection lost"
    assert wait_for(lambda: smsc.binds >= 2, timeout=10)  # the bind process came back
    assert deliver(message) == "sent"
    smsc.push_receipt("smsc-0002", "DELIVRD")

    assert wait_for(lambda: status_of(api, session_id) == "delivered", timeout=10)
    texts = {s.short_message for s in smsc.submits}
    assert len(smsc.submits) == 2 and len(texts) == 1  # sent again with the same code, never lost
