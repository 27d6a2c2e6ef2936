from django.apps import AppConfig


class RelayConfig(AppConfig):
    """The drop-in doors of API.md section 14 that send a text made elsewhere: thin adapters over otp.relay."""

    name = "relay"
    default_auto_field = "django.db.models.BigAutoField"
