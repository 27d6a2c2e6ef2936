from django.apps import AppConfig


class OtpConfig(AppConfig):
    name = "otp"
    verbose_name = "OTP"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Registers the Celery tasks in every process, the web ones included: `otp.delivery` publishes
        # them by name (it cannot import `otp.tasks`, which imports it).
        import otp.tasks  # noqa: F401
        from otp.apis import REQUEST_REFUSAL_CODES
        from otp.models import ReviewerNumber, VerifyOutcome, WorkspaceText
        from otp.selectors import outbox_state
        from senders.gateways import FINAL_RECEIPT_STATUSES
        from senders.routes import DEFAULT_ROUTE_KEY
        from zeckta import metrics
        from zeckta.localcache import forget_on_save

        forget_on_save(ReviewerNumber)  # the per-process copy of each workspace's reviewer numbers
        forget_on_save(WorkspaceText)  # and of its own texts
        metrics.outbox_reader_register(outbox_state)  # zeckta_outbox_* at scrape time
        # The counters of OTP traffic, at 0 from the first scrape. Of the routes only the SMS_BACKEND one is
        # known in advance: the configured ones get their series with their first SMS.
        metrics.known_label_values(metrics.OTP_REQUESTS, outcome=[*metrics.RequestOutcome, *REQUEST_REFUSAL_CODES])
        metrics.known_label_values(metrics.OTP_VERIFICATIONS, status=VerifyOutcome.values)
        metrics.known_label_values(
            metrics.SMS, route=[DEFAULT_ROUTE_KEY], status=[*metrics.SmsSendOutcome, *sorted(FINAL_RECEIPT_STATUSES)]
        )
