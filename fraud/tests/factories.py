"""Blocks as the guard leaves them, at any time in the past: for the reads and the lift (the API, the admin,
the dashboard). The rules' own tests make theirs through traffic instead."""

from datetime import timedelta

import factory
from django.utils import timezone

from fraud.models import FraudBlock
from workspaces.tests.factories import WorkspaceFactory


class FraudBlockFactory(factory.django.DjangoModelFactory):
    """An enforce block of one range by range_velocity, made a minute ago for an hour."""

    class Meta:
        model = FraudBlock

    workspace = factory.SubFactory(WorkspaceFactory)
    scope = FraudBlock.Scope.RANGE
    value = factory.Sequence(lambda n: f"+233204{n:03d}")
    rule = FraudBlock.Rule.RANGE_VELOCITY
    mode = FraudBlock.Mode.ENFORCE
    created_at = factory.LazyFunction(lambda: timezone.now() - timedelta(minutes=1))
    ends_at = factory.LazyAttribute(lambda block: block.created_at + timedelta(hours=1))
    evidence = factory.LazyFunction(lambda: {"sessions": 11, "converted": 0, "numbers": 11})
