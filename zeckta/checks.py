"""System checks for a deployment (`manage.py check --deploy`)."""

from django.conf import settings
from django.core.checks import Tags, Warning, register

# Backends that keep codes where operators read them (stdout) or nowhere (memory): development only.
DEVELOPMENT_SMS_BACKENDS = frozenset({"console", "locmem"})


@register(Tags.security, deploy=True)
def check_sms_backend(app_configs, **kwargs) -> list[Warning]:
    if settings.DEBUG or settings.SMS_BACKEND not in DEVELOPMENT_SMS_BACKENDS:
        return []
    return [
        Warning(
            f"SMS_BACKEND is {settings.SMS_BACKEND!r}: OTP codes would be printed or kept in memory, not sent.",
            hint="Set SMS_BACKEND=http with SMS_HTTP_URL (and SMS_HTTP_TOKEN) for your SMS gateway.",
            id="zeckta.W001",
        )
    ]
