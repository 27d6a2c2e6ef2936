from django.apps import AppConfig


class OtpConfig(AppConfig):
    name = "otp"
    verbose_name = "OTP"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Registers the Celery tasks in every process, the web ones included: `otp.delivery` publishes
        # them by name (it cannot import `otp.tasks`, which imports it).
        import otp.tasks  # noqa: F401
        from otp.models import ReviewerNumber
        from otp.selectors import outbox_state
        from zeckta import metrics
        from zeckta.localcache import forget_on_save

        forget_on_save(ReviewerNumber)  # the per-process copy of each workspace's reviewer numbers
        metrics.outbox_reader_register(outbox_state)  # zeckta_outbox_* at scrape time
