"""Screenshots of the admin, taken by headless Chromium (Debian's `chromium`, driven by Playwright) from a live
server, after a month of real traffic made by this test: OTP requests and verifications through the API,
SMS sent through the delivery path to fake HTTP providers (one refusing some, so that SMS fail over), their
delivery receipts posted back, a pumped number range in a workspace that runs the fraud guard in shadow, and a
block in force in another; then the rollup, as beat would run it.

The PNGs go to $SCREENSHOTS_DIR (default test-artifacts/screenshots, ignored by git); `make screenshots`
writes them to docs/screenshots, where the README shows them.
"""

import json
import os
import random
import re
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
import time_machine
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from cockpit.services import traffic_rollup_refresh
from fraud.models import FraudBlock
from fraud.services import safe_list_add
from fraud.tests.factories import FraudBlockFactory
from otp.delivery import SmsRetryLater, sms_deliver
from otp.models import OtpSession, SmsAttempt, SmsMessage
from otp.tests.factories import OtpSessionFactory, SmsMessageFactory
from otp.tests.helpers import REQUEST_URL, VERIFY_URL, wrong_code
from otp.tests.processes import clean_queue
from senders.gateways import locmem
from senders.models import Route, SenderName
from senders.routes import route_create
from senders.tests.factories import SenderNameFactory
from senders.tests.fake_gateway import Answer, FakeGateway
from workspaces.billing import balance_credit
from workspaces.models import Workspace
from workspaces.tests.factories import WorkspaceFactory, issue_key
from zeckta.celery import app as celery_app
from zeckta.testing import api_client

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

OUTPUT_DIR = Path(os.environ.get("SCREENSHOTS_DIR") or settings.BASE_DIR / "test-artifacts" / "screenshots")
CHROMIUM_NAMES = ("chromium", "chromium-browser")
INSTALL_CHROMIUM = "apt-get install -y chromium"
INSTALL_PLAYWRIGHT = ".venv/bin/pip install -r requirements.txt"
RECEIPT_TOKEN = "receipt-token-for-the-fake-providers"
VIEWPORT = {"width": 1440, "height": 900}
PASSWORD = "operator-password"  # noqa: S105 (a test user's)
CODE = re.compile(r"\b\d{6}\b")
PUMPED_RANGE = "+233205550"  # 1,000 numbers from +233205550000
BLOCKED_RANGE = "+234803999"


def chromium_path() -> str:
    """Debian's Chromium: Playwright drives it instead of downloading a browser build of its own."""
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    pytest.fail(f"headless Chromium is not installed: run `{INSTALL_CHROMIUM}` (.ci/run does it when missing)")


class Traffic:
    """Makes OTP traffic the way clients and providers do, in this process, against the live server's database."""

    def __init__(self, gateways: dict[str, FakeGateway]) -> None:
        self.gateways = gateways
        self.rng = random.Random(20261202)  # the same month of traffic on every run
        self.clients: dict[str, tuple] = {}
        self.provider = Client()  # what posts the receipts: no API key
        self.routes: dict[str, Route] = {}
        self.numbers = 0

    def workspace(self, slug: str, name: str, sender: str, *, prepaid_units: int = 0, guard: str = "enforce") -> None:
        workspace = WorkspaceFactory(slug=slug, name=name, is_prepaid=bool(prepaid_units), fraud_guard_mode=guard)
        if prepaid_units:
            balance_credit(workspace=workspace, units=prepaid_units, actor="operator", reference="INV-2026-0042")
        SenderNameFactory(workspace=workspace, name=sender)
        self.clients[slug] = (api_client(issue_key(workspace, name="backend", tps=10_000)[1]), sender)

    def route(self, name: str, gateway: str, *, countries: str, priority: int) -> None:
        self.routes[name] = route_create(
            name=name,
            backend="http",
            countries=countries,
            priority=priority,
            actor="operator",
            values={"url": self.gateways[gateway].url, "receipt_token": RECEIPT_TOKEN, "timeout": "2"},
        )

    def number(self, first_digits: str, length: int) -> str:
        self.numbers += 1
        return first_digits + str(self.numbers).zfill(length - len(first_digits))

    def sign_in(
        self, slug: str, dest: str, *, verify: bool, wrong_first: bool = False, receipt: str = "delivered"
    ) -> str:
        """One user signing in: request, the SMS sent and its receipt, then the code typed (or not)."""
        api, sender = self.clients[slug]
        response = api.post(REQUEST_URL, {"dest": dest, "src": sender, "purpose": "LOGIN"}, format="json")
        assert response.status_code == 200, response.json()
        session_id = response.json()["data"]["sessionId"]
        message = SmsMessage.objects.get(session__public_id=session_id)
        self.deliver(message)
        self.receipt(message, receipt)
        if verify:
            code = self.code(message)
            if wrong_first:
                assert (
                    api.post(VERIFY_URL, {"sessionId": session_id, "code": wrong_code(code)}, format="json").status_code
                    == 400
                )
            assert api.post(VERIFY_URL, {"sessionId": session_id, "code": code}, format="json").status_code == 200
        return session_id

    def deliver(self, message: SmsMessage) -> None:
        """The send task, as the worker runs it: failovers are retries without delay."""
        for _ in range(5):
            try:
                sms_deliver(message_id=message.pk)
                return
            except SmsRetryLater:
                continue
        raise AssertionError(f"SMS {message.public_id} still retrying")

    def receipt(self, message: SmsMessage, status: str) -> None:
        attempt = SmsAttempt.objects.filter(message=message, status="accepted").last()
        if attempt is None or attempt.route is None:
            return  # the default route (locmem) sends no receipts
        body = {"id": attempt.provider_message_id, "status": status, "timestamp": timezone.now().isoformat()}
        response = self.provider.post(
            reverse("sms-receipt", args=[attempt.route.public_id]),
            json.dumps(body),
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {RECEIPT_TOKEN}",
        )
        assert response.status_code == 200, response.content

    def code(self, message: SmsMessage) -> str:
        reference = str(message.public_id)
        texts = [
            request.json["text"]
            for gateway in self.gateways.values()
            for request in gateway.requests
            if request.json.get("reference") == reference
        ]
        texts += [sms.text for sms in locmem.outbox if sms.reference == reference]
        return CODE.search(texts[-1]).group()

    def other_channels(self, when, sessions: int) -> None:
        """A day's WhatsApp-first sign-ins of Acme, falling back to SMS and then a call, as rows.

        Written as rows, not sent: each fallback waits out fallbackAfterSeconds (5 s at least) of real time for
        the beat's scan, too slow for a day of sessions. The same flow through the API, a worker and the fake
        providers is otp/tests/test_channels_e2e.py. The rows are what that path writes: one send row per
        channel tried, each with its route, status and units; the session approved by the code of its latest
        send, or not at all.
        """
        sender = SenderName.objects.get(workspace__slug="acme")
        for _ in range(sessions):
            country, first_digits, length = self.rng.choice(
                [("GH", "+23324", 13), ("NG", "+234803", 14), ("NG", "+234803", 14), ("KE", "+25471", 13)]
            )
            # How WhatsApp fares differs by country: the breakdown by country and channel is there to show it.
            reach = {"GH": 0.9, "NG": 0.7, "KE": 0.55}[country]
            tried = [("whatsapp", "delivered" if self.rng.random() < reach else "undeliverable", "meta-cloud")]
            if tried[-1][1] != "delivered":
                tried.append(("sms", "delivered" if self.rng.random() < 0.8 else "sent", "eurosms"))
                if tried[-1][1] != "delivered" and self.rng.random() < 0.7:
                    tried.append(("voice", "delivered", "twilio-voice"))
            approved = tried[-1][1] == "delivered" and self.rng.random() < 0.85
            moment = when + timedelta(minutes=self.rng.randint(0, 59))
            made = OtpSessionFactory(
                sender_name=sender,
                dest=self.number(first_digits, length),
                country=country,
                status="APPROVED" if approved else "EXPIRED",
                created_at=moment,
            )
            for index, (channel, status, route) in enumerate(tried):
                SmsMessageFactory(
                    session=made,
                    channel=channel,
                    status=status,
                    route_name=route,
                    created_at=moment + timedelta(seconds=30 * index),
                )

    def day(self, when, sessions: int) -> None:
        """A day's sign-ins at `when`: mostly Acme's Ghanaian users, some Nigerian, Kenyan and British ones."""
        with time_machine.travel(when, tick=True):
            for _ in range(sessions):
                slug = self.rng.choice(["acme", "acme", "acme", "globex"])
                first_digits, length = self.rng.choice(
                    [("+23324", 13), ("+23324", 13), ("+23324", 13), ("+234803", 14), ("+25471", 13), ("+44770", 13)]
                )
                self.sign_in(
                    slug,
                    self.number(first_digits, length),
                    verify=self.rng.random() < 0.8,
                    wrong_first=self.rng.random() < 0.15,
                    receipt="delivered" if self.rng.random() < 0.92 else "undeliverable",
                )


@pytest.fixture
def gateways():
    started = {"afritel": FakeGateway().start(), "eurosms": FakeGateway().start()}
    yield started
    for gateway in started.values():
        gateway.stop()


@pytest.fixture
def month_of_traffic(gateways, settings) -> dict[str, object]:
    """A month of sign-ins, and in the last hours a pumped range; returns what the screenshots show."""
    settings.SMS_BACKEND = "locmem"
    clean_queue(celery_app.conf.broker_url)  # the requests publish their send tasks: this test runs them itself
    traffic = Traffic(gateways)
    traffic.workspace("acme", "Acme Bank", "ACMEBANK")
    # Globex tries the fraud guard in shadow: the pumping below goes through, and is recorded.
    traffic.workspace("globex", "Globex Shop", "GLOBEX", prepaid_units=1000, guard="shadow")
    traffic.route("afritel-gh", "afritel", countries="GH", priority=10)
    traffic.route("eurosms", "eurosms", countries="", priority=20)

    now = timezone.now()
    for days_ago in range(29, 0, -1):
        traffic.day(now - timedelta(days=days_ago, hours=traffic.rng.randint(0, 12)), traffic.rng.randint(4, 9))
        # Acme started sending by WhatsApp (falling back to SMS, then a call) a fortnight ago.
        if days_ago <= 14:
            traffic.other_channels(now - timedelta(days=days_ago, hours=traffic.rng.randint(0, 12)), 4)
    for hours_ago in range(20, 0, -2):
        traffic.day(now - timedelta(hours=hours_ago, minutes=30), traffic.rng.randint(1, 3))
        traffic.other_channels(now - timedelta(hours=hours_ago, minutes=55), traffic.rng.randint(1, 3))
    # Afritel refuses one SMS for good: it fails over to eurosms, which delivers it.
    gateways["afritel"].answer(Answer(status=400, body={"error": "number barred by operator"}))
    failover = traffic.sign_in("acme", "+233244123456", verify=True, wrong_first=True)
    # SMS pumping: bots request codes for a block of Ghanaian numbers through Globex's sign-up form.
    with time_machine.travel(now - timedelta(hours=3), tick=True):
        for _ in range(24):
            traffic.sign_in("globex", traffic.number(PUMPED_RANGE, 13), verify=False, receipt="delivered")
    clean_queue(celery_app.conf.broker_url)
    globex, acme = Workspace.objects.get(slug="globex"), Workspace.objects.get(slug="acme")
    # What the guard recorded as the range tripped range_velocity; written here when the guard has not.
    if not FraudBlock.objects.filter(workspace=globex, value=PUMPED_RANGE).exists():
        FraudBlockFactory(
            workspace=globex,
            value=PUMPED_RANGE,
            mode=FraudBlock.Mode.SHADOW,
            created_at=now - timedelta(hours=3),
            evidence={"sessions": 11, "converted": 0, "numbers": 11},
        )
    # Acme's guard blocked a Nigerian range an hour ago: a block in force, lifted by staff from its page.
    block = FraudBlockFactory(
        workspace=acme,
        value=BLOCKED_RANGE,
        rule=FraudBlock.Rule.RANGE_CONVERSION,
        created_at=now - timedelta(hours=1),
        ends_at=now + timedelta(hours=23),
        evidence={"sessions": 31, "converted": 1, "numbers": 29},
    )
    safe_list_add(workspace=globex, prefix="+233244123", note="Globex's own support phones", actor="operator")
    traffic_rollup_refresh()
    return {
        "block": block,
        "failover_session": OtpSession.objects.get(public_id=failover),
        "routes": traffic.routes,
        "pumped_workspace": Workspace.objects.get(slug="globex"),
    }


def test_screenshots_of_the_dashboard_a_workspace_a_session_and_a_route(live_server, month_of_traffic, settings):
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail(f"Playwright for Python is not installed: run `{INSTALL_PLAYWRIGHT}`")
    executable = chromium_path()
    # The live server speaks plain HTTP: cookies marked Secure would not come back to it.
    settings.SESSION_COOKIE_SECURE = settings.CSRF_COOKIE_SECURE = False
    get_user_model().objects.create_superuser("operator", "operator@example.com", PASSWORD)
    session = month_of_traffic["failover_session"]
    route = month_of_traffic["routes"]["afritel-gh"]
    pages = {
        "dashboard": reverse("admin:index"),
        "workspace": reverse("admin:workspaces_workspace_change", args=[month_of_traffic["pumped_workspace"].pk]),
        "session": reverse("admin:otp_otpsession_change", args=[session.pk]),
        "route": reverse("admin:senders_route_change", args=[route.pk]),
        "blocks": reverse("admin:fraud_fraudblock_changelist"),
        "block": reverse("admin:fraud_fraudblock_change", args=[month_of_traffic["block"].pk]),
    }
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.goto(live_server.url + reverse("admin:login"))
            page.fill("#id_username", "operator")
            page.fill("#id_password", PASSWORD)
            page.click("input[type=submit]")
            page.wait_for_url(live_server.url + reverse("admin:index"))
            for name, path in pages.items():
                page.goto(live_server.url + path)
                page.wait_for_load_state("networkidle")
                if name == "dashboard":
                    # Both charts drawn by the locally served Chart.js.
                    page.wait_for_function("window.Chart && Object.keys(Chart.instances).length === 2")
                    assert BLOCKED_RANGE in page.inner_text("#cockpit-blocks-active")
                    assert PUMPED_RANGE in page.inner_text("#cockpit-blocks-shadow")
                    channels = page.inner_text("#cockpit-by-channel")
                    assert all(label in channels for label in ("SMS", "WhatsApp", "Voice call")), channels
                page.screenshot(path=str(OUTPUT_DIR / f"{name}.png"), full_page=True)
        finally:
            browser.close()

    for name in pages:
        png = (OUTPUT_DIR / f"{name}.png").read_bytes()
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 20_000, name
        width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
        assert width == VIEWPORT["width"] and height >= VIEWPORT["height"] // 2, (name, width, height)
