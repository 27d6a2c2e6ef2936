from django.db import migrations, models


class Migration(migrations.Migration):
    """`sender` meant four things; the sender name's text is now `SenderName.name` (API field `sender`)."""

    dependencies = [
        ("senders", "0001_initial"),
        ("workspaces", "0002_auditevent"),
    ]

    operations = [
        migrations.RemoveConstraint(model_name="sendername", name="senders_sendername_unique_per_workspace"),
        migrations.RenameField(model_name="sendername", old_name="sender", new_name="name"),
        migrations.AlterField(
            model_name="sendername", name="name", field=models.CharField(max_length=16, verbose_name="sender")
        ),
        migrations.AlterModelOptions(name="sendername", options={"ordering": ["name"]}),
        migrations.AddConstraint(
            model_name="sendername",
            constraint=models.UniqueConstraint(fields=("workspace", "name"), name="senders_sendername_unique_per_workspace"),
        ),
    ]
