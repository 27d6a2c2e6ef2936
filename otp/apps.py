from django.apps import AppConfig


class OtpConfig(AppConfig):
    name = "otp"
    verbose_name = "OTP"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Registers the Celery tasks in every process, the web ones included: `otp.delivery` publishes
        # them by name (it cannot import `otp.tasks`, which imports it).
        import otp.tasks  # noqa: F401
        from otp.events import otp_session_view_register
        from otp.serializers import OtpSessionDataSerializer

        # What webhook events carry (otp.events): the session as GET /otp/{sessionId} shows it, at `at`.
        otp_session_view_register(
            lambda session, at: dict(OtpSessionDataSerializer(session, context={"now": at}).data))
