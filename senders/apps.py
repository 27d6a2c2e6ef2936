from django.apps import AppConfig


class SendersConfig(AppConfig):
    name = "senders"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from senders.models import SenderName
        from zeckta.localcache import forget_on_save

        forget_on_save(SenderName)
