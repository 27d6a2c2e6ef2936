"""Production settings: `check --deploy` is clean, and the service refuses to start without its secrets."""

import os
import subprocess
import sys

from django.conf import settings

PRODUCTION_ENV = {
    "DEBUG": "False",
    "SECRET_KEY": "k" * 60 + "-Zz09!@#$%^&*()",
    "OTP_HASH_KEY": "an-otp-pepper-kept-outside-the-database",
    "ALLOWED_HOSTS": "otp.example.com",
    "DATABASE_URL": "sqlite:///:memory:",
    "SMS_HTTP_URL": "https://sms-gateway.example.com/v1/messages",
}


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    # Without what the test settings put in this process's environment (SECURE_SSL_REDIRECT=False ...).
    test_only = {"SECURE_SSL_REDIRECT", "REDIS_URL", "SMS_BACKEND"}
    clean = {k: v for k, v in os.environ.items()
             if k not in PRODUCTION_ENV and k not in test_only and not k.startswith("DJANGO_")}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=settings.BASE_DIR,
        env={**clean, "DJANGO_SETTINGS_MODULE": "zeckta.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_production_settings_pass_the_deploy_check_without_warnings():
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION_ENV)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_the_deploy_check_warns_when_codes_would_only_be_printed():
    result = manage("check", "--deploy", env={**PRODUCTION_ENV, "SMS_HTTP_URL": "", "SMS_BACKEND": "console"})
    assert "zeckta.W001" in result.stdout + result.stderr


def test_without_debug_the_secrets_and_hosts_are_required():
    for missing in ("SECRET_KEY", "OTP_HASH_KEY", "ALLOWED_HOSTS"):
        env = {k: v for k, v in PRODUCTION_ENV.items() if k != missing}
        result = manage("check", env={**env, missing: ""})
        assert result.returncode != 0
        assert missing in result.stderr


def test_the_admin_url_is_configurable():
    script = "from django.urls import reverse; print(reverse('admin:index'))"
    result = subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {script}"],
        cwd=settings.BASE_DIR,
        env={**os.environ, **PRODUCTION_ENV, "DJANGO_SETTINGS_MODULE": "zeckta.settings", "ADMIN_URL": "ops-7f3a/"},
        capture_output=True, text=True, timeout=60,
    )
    assert result.stdout.strip() == "/ops-7f3a/", result.stderr
