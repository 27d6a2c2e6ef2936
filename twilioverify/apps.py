from django.apps import AppConfig


class TwilioVerifyConfig(AppConfig):
    """The Twilio Verify v2 door (API.md section 14): Twilio's URLs, form bodies and JSON shapes, translated to
    the OTP services. It keeps no state of its own."""

    name = "twilioverify"
    verbose_name = "Twilio Verify door"
