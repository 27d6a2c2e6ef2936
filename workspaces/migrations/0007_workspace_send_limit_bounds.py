"""Database bounds for the send limits (workspaces.models), so both versions of the OTP rules only ever
read values they agree on.

Rows written past the forms (raw SQL, an old shell session) are brought into bounds first: a 0 country
ceiling becomes NULL, the stored "no ceiling" (the Python rules already read 0 so; the SQL function
failed on it); a 0 destination limit, window or wrong-code budget, which failed every request on both
versions, becomes the default; a daily cap past the maximum becomes the maximum.
"""

import django.core.validators
from django.conf import settings
from django.db import migrations, models

DAILY_SMS_CAP_MAX = 100_000_000


def into_bounds(apps, schema_editor) -> None:
    Workspace = apps.get_model("workspaces", "Workspace")
    Workspace.objects.filter(country_hourly_limit=0).update(country_hourly_limit=None)
    Workspace.objects.filter(destination_limit=0).update(destination_limit=settings.OTP_DEFAULT_DESTINATION_LIMIT)
    Workspace.objects.filter(destination_window_seconds=0).update(
        destination_window_seconds=settings.OTP_DEFAULT_DESTINATION_WINDOW_SECONDS
    )
    Workspace.objects.filter(wrong_code_budget=0).update(wrong_code_budget=settings.OTP_DEFAULT_WRONG_CODE_BUDGET)
    Workspace.objects.filter(daily_sms_cap__gt=DAILY_SMS_CAP_MAX).update(daily_sms_cap=DAILY_SMS_CAP_MAX)


class Migration(migrations.Migration):

    dependencies = [
        ('workspaces', '0006_apikey_is_test_reviewer_audit'),
    ]

    operations = [
        migrations.RunPython(into_bounds, migrations.RunPython.noop, elidable=True),
        migrations.AlterField(
            model_name='workspace',
            name='daily_sms_cap',
            field=models.PositiveIntegerField(default=10000, help_text='New OTP SMS per UTC day for the whole workspace. 0: no cap.', validators=[django.core.validators.MaxValueValidator(100000000)]),
        ),
        migrations.AddConstraint(
            model_name='workspace',
            constraint=models.CheckConstraint(condition=models.Q(('destination_limit__gte', 1)), name='workspaces_workspace_destination_limit_positive'),
        ),
        migrations.AddConstraint(
            model_name='workspace',
            constraint=models.CheckConstraint(condition=models.Q(('destination_window_seconds__gte', 1)), name='workspaces_workspace_destination_window_positive'),
        ),
        migrations.AddConstraint(
            model_name='workspace',
            constraint=models.CheckConstraint(condition=models.Q(('wrong_code_budget__gte', 1)), name='workspaces_workspace_wrong_code_budget_positive'),
        ),
        migrations.AddConstraint(
            model_name='workspace',
            constraint=models.CheckConstraint(condition=models.Q(('daily_sms_cap__lte', 100000000)), name='workspaces_workspace_daily_sms_cap_range'),
        ),
        migrations.AddConstraint(
            model_name='workspace',
            constraint=models.CheckConstraint(condition=models.Q(('country_hourly_limit__isnull', True), ('country_hourly_limit__gte', 1), _connector='OR'), name='workspaces_workspace_country_hourly_limit_positive'),
        ),
    ]
