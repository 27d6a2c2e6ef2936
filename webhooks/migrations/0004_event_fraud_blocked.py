"""The fraud guard's event, fraud.blocked (API.md section 13), among the event types a delivery can carry.
Choices only: no change to the table."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("webhooks", "0003_endpoint_is_test"),
    ]

    operations = [
        migrations.AlterField(
            model_name="webhookdelivery",
            name="event_type",
            field=models.CharField(
                choices=[
                    ("otp.sent", "A provider accepted the SMS"),
                    ("otp.delivered", "The SMS was delivered"),
                    ("otp.delivery_failed", "The SMS failed for good"),
                    ("otp.approved", "The right code was entered"),
                    ("otp.max_attempts_reached", "The last attempt was used by a wrong code"),
                    ("otp.expired", "The session expired"),
                    ("otp.canceled", "The session was canceled"),
                    ("fraud.blocked", "The fraud guard blocked a number range or a country"),
                ],
                max_length=40,
            ),
        ),
    ]
