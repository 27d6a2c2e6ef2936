from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "webhooks"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Registers the Celery tasks in every process: `webhooks.delivery` publishes them by name.
        import webhooks.tasks  # noqa: F401
        from webhooks.models import WebhookEndpoint
        from zeckta.localcache import forget_on_save

        # The workspace's subscriptions are cached (webhooks.selectors): an endpoint saved or deleted as an
        # instance (the admin) reaches every event check of this process at once.
        forget_on_save(WebhookEndpoint)
