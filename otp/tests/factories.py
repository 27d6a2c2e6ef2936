"""Sessions and SMS rows as delivery leaves them, at any time in the past: for reads (the admin, the dashboard)
that need a known history. The request and verify tests make theirs through the API instead."""

from datetime import timedelta

import factory
from django.utils import timezone

from otp.models import OtpSession, SmsMessage
from senders.tests.factories import SenderNameFactory


class OtpSessionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = OtpSession

    sender_name = factory.SubFactory(SenderNameFactory)
    workspace = factory.SelfAttribute("sender_name.workspace")
    dest = factory.Sequence(lambda n: f"+23320{n:07d}")
    country = "GH"
    src = factory.SelfAttribute("sender_name.name")
    purpose = "LOGIN"
    code_digest = "0" * 64
    status = OtpSession.Status.EXPIRED
    max_attempts = 5
    created_at = factory.LazyFunction(timezone.now)
    expires_at = factory.LazyAttribute(lambda session: session.created_at + timedelta(minutes=5))
    verified_at = factory.LazyAttribute(
        lambda session: session.created_at + timedelta(seconds=30) if session.status == "APPROVED" else None
    )


class SmsMessageFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = SmsMessage

    session = factory.SubFactory(OtpSessionFactory)
    workspace = factory.SelfAttribute("session.workspace")
    to = factory.SelfAttribute("session.dest")
    country = factory.SelfAttribute("session.country")
    src = factory.SelfAttribute("session.src")
    is_test = factory.SelfAttribute("session.is_test")
    status = SmsMessage.Status.DELIVERED
    encoding = "GSM-7"
    segments = 1
    units = factory.SelfAttribute("segments")
    attempts = 1
    route_key = "default"
    route_name = "default"
    provider_message_id = factory.Sequence(lambda n: f"provider-{n}")
    created_at = factory.SelfAttribute("session.created_at")
    next_attempt_at = factory.SelfAttribute("created_at")
    updated_at = factory.SelfAttribute("created_at")
