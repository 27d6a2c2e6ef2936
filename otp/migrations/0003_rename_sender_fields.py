from django.db import migrations


class Migration(migrations.Migration):
    """One name per concept: the session's foreign key is `sender_name`; the text an SMS shows is `src`."""

    dependencies = [
        ("otp", "0002_idempotency_record"),
        ("senders", "0002_rename_sender_name"),
    ]

    operations = [
        migrations.RenameField(model_name="otpsession", old_name="sender", new_name="sender_name"),
        migrations.RenameField(model_name="smsmessage", old_name="sender", new_name="src"),
    ]
