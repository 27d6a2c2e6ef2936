# Route.backend takes the backends of the WhatsApp and voice channels (API.md section 15): choices only, no SQL change.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("senders", "0005_default_sender"),
    ]

    operations = [
        migrations.AlterField(
            model_name="route",
            name="backend",
            field=models.CharField(
                choices=[
                    ("twilio", "Twilio"),
                    ("vonage", "Vonage"),
                    ("infobip", "Infobip"),
                    ("africastalking", "Africastalking"),
                    ("smpp", "Smpp"),
                    ("http", "Http"),
                    ("console", "Console"),
                    ("file", "File"),
                    ("locmem", "Locmem"),
                    ("locmem_whatsapp", "Locmem WhatsApp (development)"),
                    ("locmem_voice", "Locmem voice (development)"),
                    ("whatsapp", "WhatsApp"),
                    ("twilio_voice", "Twilio voice"),
                    ("vonage_voice", "Vonage voice"),
                ],
                max_length=16,
            ),
        ),
    ]
