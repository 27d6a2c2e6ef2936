"""The workspace's OTP policy is bounded in the database too: both versions of the OTP rules (otp/sql/ and
otp.limits) only ever read values they agree on (API.md sections 2 and 6)."""

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from workspaces.models import Workspace
from workspaces.tests.factories import WorkspaceFactory

pytestmark = pytest.mark.django_db

OUT_OF_BOUNDS = [
    ("otp_validity_seconds", 9, "workspaces_workspace_validity_range"),
    ("otp_validity_seconds", 86_401, "workspaces_workspace_validity_range"),
    ("otp_max_attempts", 0, "workspaces_workspace_attempts_range"),
    ("otp_max_attempts", 11, "workspaces_workspace_attempts_range"),
    ("otp_code_length", 3, "workspaces_workspace_code_length_range"),
    ("otp_code_length", 11, "workspaces_workspace_code_length_range"),
    ("destination_limit", 0, "workspaces_workspace_destination_limit_positive"),
    ("destination_window_seconds", 0, "workspaces_workspace_destination_window_positive"),
    ("wrong_code_budget", 0, "workspaces_workspace_wrong_code_budget_positive"),
    ("daily_sms_cap", 100_000_001, "workspaces_workspace_daily_sms_cap_range"),
    ("country_hourly_limit", 0, "workspaces_workspace_country_hourly_limit_positive"),
]
IN_BOUNDS = [
    ("otp_validity_seconds", 10),
    ("otp_validity_seconds", 86_400),
    ("otp_max_attempts", 1),
    ("otp_max_attempts", 10),
    ("otp_code_length", 4),
    ("otp_code_length", 10),
    ("destination_limit", 1),
    ("destination_window_seconds", 1),
    ("wrong_code_budget", 1),
    ("daily_sms_cap", 0),  # 0: no cap
    ("daily_sms_cap", 100_000_000),
    ("country_hourly_limit", None),
    ("country_hourly_limit", 1),  # None: none
]


@pytest.mark.parametrize(("field", "value", "constraint"), OUT_OF_BOUNDS)
def test_the_database_refuses_a_policy_out_of_bounds(field, value, constraint):
    workspace = WorkspaceFactory()
    with pytest.raises(IntegrityError, match=constraint), transaction.atomic():
        Workspace.objects.filter(pk=workspace.pk).update(**{field: value})
    workspace.refresh_from_db()
    assert getattr(workspace, field) == Workspace._meta.get_field(field).get_default()


@pytest.mark.parametrize(("field", "value"), IN_BOUNDS)
def test_the_database_keeps_a_policy_at_its_bounds(field, value):
    workspace = WorkspaceFactory()
    Workspace.objects.filter(pk=workspace.pk).update(**{field: value})
    workspace.refresh_from_db()
    assert getattr(workspace, field) == value


@pytest.mark.parametrize(("field", "value", "constraint"), OUT_OF_BOUNDS)
def test_the_admin_form_refuses_what_the_database_would(field, value, constraint):
    workspace = WorkspaceFactory()
    setattr(workspace, field, value)
    with pytest.raises(ValidationError) as refused:
        workspace.full_clean()
    assert field in refused.value.message_dict
