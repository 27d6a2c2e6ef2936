"""The drop-in doors (API.md section 14): each workspace's AC/VA ids and the relay switch.

The ids are unique, so existing workspaces get theirs one by one before the columns become unique and
required (a column default would give every row the same value).
"""

import uuid

from django.db import migrations, models

import workspaces.models


def give_ids(apps, schema_editor):
    Workspace = apps.get_model("workspaces", "Workspace")
    for workspace in Workspace.objects.filter(account_sid__isnull=True).only("pk"):
        Workspace.objects.filter(pk=workspace.pk).update(
            account_sid=f"AC{uuid.uuid4().hex}", service_sid=f"VA{uuid.uuid4().hex}"
        )


class Migration(migrations.Migration):
    dependencies = [("workspaces", "0008_fraud_guard_policy")]

    operations = [
        migrations.AddField(
            model_name="workspace", name="account_sid", field=models.CharField(max_length=34, null=True, editable=False)
        ),
        migrations.AddField(
            model_name="workspace", name="service_sid", field=models.CharField(max_length=34, null=True, editable=False)
        ),
        migrations.RunPython(give_ids, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="workspace",
            name="account_sid",
            field=models.CharField(
                default=workspaces.models.new_account_sid, editable=False, max_length=34, unique=True
            ),
        ),
        migrations.AlterField(
            model_name="workspace",
            name="service_sid",
            field=models.CharField(
                default=workspaces.models.new_service_sid, editable=False, max_length=34, unique=True
            ),
        ),
        migrations.AddField(
            model_name="workspace",
            name="relay_enabled",
            field=models.BooleanField(
                default=False,
                help_text="Let this workspace's keys send texts they wrote themselves (POST /v1/messaging/sms), for "
                "identity servers that make and check their own codes. Every send limit and the fraud guard still "
                "apply.",
            ),
        ),
        migrations.AddConstraint(
            model_name="workspace",
            constraint=models.CheckConstraint(
                condition=models.Q(account_sid__regex="^AC[0-9a-f]{32}$")
                & models.Q(service_sid__regex="^VA[0-9a-f]{32}$"),
                name="workspaces_workspace_sids_format",
            ),
        ),
    ]
