from django.apps import AppConfig


class SendersConfig(AppConfig):
    name = "senders"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        import zeckta.checks
        from senders.models import SenderName
        from senders.routes import DEVELOPMENT_BACKENDS, production_route_names, route_receipt_url_problems
        from zeckta.localcache import forget_on_save

        forget_on_save(SenderName)
        # The deploy check of the SMS routes counts the configured ones (when it may read the database).
        zeckta.checks.production_routes_reader = production_route_names
        zeckta.checks.receipt_url_problems_reader = route_receipt_url_problems
        zeckta.checks.DEVELOPMENT_SMS_BACKENDS = DEVELOPMENT_BACKENDS
