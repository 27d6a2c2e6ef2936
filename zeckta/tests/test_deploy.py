"""Production settings: `check --deploy` is clean, and the service refuses to start without its secrets."""

import os
import subprocess
import sys

import pytest
from django.conf import settings

PRODUCTION_ENV = {
    "DEBUG": "False",
    "SECRET_KEY": "k" * 60 + "-Zz09!@#$%^&*()",
    "OTP_HASH_KEY": "an-otp-pepper-kept-outside-the-database",
    "ALLOWED_HOSTS": "otp.example.com",
    "DATABASE_URL": "postgres://zeckta@db.internal:5432/zeckta",
    "REDIS_URL": "redis://redis.internal:6379/0",
    "SMS_HTTP_URL": "https://sms-gateway.example.com/v1/messages",
}


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    # Without what the test settings put in this process's environment (SECURE_SSL_REDIRECT=False ...).
    test_only = {"SECURE_SSL_REDIRECT", "REDIS_URL", "SMS_BACKEND"}
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in PRODUCTION_ENV and k not in test_only and not k.startswith("DJANGO_")
    }
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


@pytest.mark.parametrize(
    "change, error",
    [
        ({"REDIS_URL": "", "CELERY_BROKER_URL": ""}, "zeckta.E001"),  # tasks in requests, limits per process
        ({"DATABASE_URL": "sqlite:///db.sqlite3"}, "zeckta.E002"),
        ({"SECRET_KEY": "short-but-set"}, "zeckta.E003"),
        ({"OTP_HASH_KEY": "x" * 31}, "zeckta.E003"),
        ({"SECRET_KEY": "change-me-to-a-long-random-string"}, "zeckta.E003"),  # .env.example's placeholder
        ({"OTP_HASH_KEY": "change-me-to-another-long-random-string"}, "zeckta.E003"),
        ({"SECRET_KEY": "dev-insecure-secret-key-change-me"}, "zeckta.E003"),  # the development default
        ({"SMS_HTTP_URL": "http://sms-gateway.example.com/v1/messages"}, "zeckta.E004"),  # in clear text
        ({"SMS_HTTP_URL": "", "SMS_BACKEND": "console"}, "zeckta.E005"),  # codes printed, not sent
        ({"SMS_HTTP_URL": "", "SMS_BACKEND": "file"}, "zeckta.E005"),
        ({"SMS_HTTP_URL": "", "SMS_BACKEND": "locmem"}, "zeckta.E005"),
        ({"SECRET_KEY": "django-insecure-" + "q" * 50}, "zeckta.E003"),  # startproject's, never replaced
        ({"OTP_HASH_KEY": "please-change-me-" + "q" * 40}, "zeckta.E003"),
        ({"METRICS_TOKEN": "metrics"}, "zeckta.E003"),  # the optional secrets too, once set
        ({"SMS_ENCRYPTION_KEY": "short"}, "zeckta.E003"),
        ({"WEBHOOK_ENCRYPTION_KEY": "short"}, "zeckta.E003"),
        ({"SMS_HTTP_RECEIPT_TOKEN": "receipts"}, "zeckta.E003"),
    ],
)
def test_the_deploy_check_fails_on_an_unsafe_production_environment(change, error):
    result = manage("check", "--deploy", env={**PRODUCTION_ENV, **change})
    assert result.returncode != 0, result.stdout + result.stderr
    assert error in result.stderr and "ERROR" in result.stderr


def test_a_long_metrics_token_and_no_metrics_token_both_pass_without_warnings():
    # Without one, /metrics answers loopback clients only: nothing to warn about.
    for env in (PRODUCTION_ENV, {**PRODUCTION_ENV, "METRICS_TOKEN": "m" * 40}):
        result = manage("check", "--deploy", "--fail-level", "WARNING", env=env)
        assert result.returncode == 0, result.stdout + result.stderr


def test_a_local_cache_longer_than_a_second_is_a_deploy_warning():
    result = manage("check", "--deploy", "--fail-level", "WARNING", env={**PRODUCTION_ENV, "LOCAL_CACHE_SECONDS": "5"})
    assert result.returncode != 0 and "zeckta.W001" in result.stderr
    assert manage("check", "--deploy", env={**PRODUCTION_ENV, "LOCAL_CACHE_SECONDS": "5"}).returncode == 0


def test_a_deployment_where_the_fraud_guard_cannot_run_is_a_deploy_warning():
    # A broker that is not Redis, and no REDIS_URL: tasks run, the guard does not (fraud.guard needs Redis).
    env = {**PRODUCTION_ENV, "REDIS_URL": "", "CELERY_BROKER_URL": "amqp://guest@mq.internal:5672//"}
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=env)
    assert result.returncode != 0 and "zeckta.W003" in result.stderr and "fraud guard" in result.stderr
    assert "zeckta.E001" not in result.stderr  # a broker is there: only the guard is missing
    assert manage("check", "--deploy", env=env).returncode == 0  # a warning, not an error


def test_an_http_gateway_on_loopback_is_allowed():
    result = manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        env={**PRODUCTION_ENV, "SMS_HTTP_URL": "http://127.0.0.1:9000/sms"},
    )
    assert result.returncode == 0, result.stdout + result.stderr


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
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.stdout.strip() == "/ops-7f3a/", result.stderr


def test_the_admin_and_docs_render_without_collectstatic():
    """Production storage, no STATIC_ROOT: whitenoise serves from the apps, pages never 500 for a manifest."""
    script = (
        "from django.test import Client; c = Client(); "
        "print(c.get('/admin/login/', secure=True).status_code, c.get('/docs/', secure=True).status_code, "
        "c.get('/static/admin/css/base.css', secure=True).status_code)"
    )
    result = subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {script}"],
        cwd=settings.BASE_DIR,
        env={
            **os.environ,
            **PRODUCTION_ENV,
            "DATABASE_URL": "sqlite:///:memory:",
            "DJANGO_SETTINGS_MODULE": "zeckta.settings",
            "ALLOWED_HOSTS": "testserver",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.stdout.split() == ["200", "200", "200"], result.stderr[-2000:]
