"""Test settings: the real PostgreSQL and Redis of this machine unless the environment says otherwise."""

import os

os.environ.setdefault("DEBUG", "False")
os.environ.setdefault("SECRET_KEY", "test-secret-key")
os.environ.setdefault("OTP_HASH_KEY", "test-otp-hash-key")
os.environ.setdefault("ALLOWED_HOSTS", "testserver,localhost,127.0.0.1")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/zeckta")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")
os.environ.setdefault("SMS_BACKEND", "locmem")
os.environ.setdefault("SECURE_SSL_REDIRECT", "False")
# The suite runs on the per-send tables by day (migration otp 0021), the harder of the two layouts.
os.environ.setdefault("OTP_PARTITION_BY_DAY", "True")

from zeckta.settings import *  # noqa: E402,F403

# Hashing test users' passwords slowly buys nothing.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES = {**STORAGES, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}  # noqa: F405

# Every 4xx a test provokes would print a django.request warning; tests that read them lower the level.
LOGGING["loggers"]["django.request"] = {"level": "ERROR"}  # noqa: F405

# Process tests (otp/tests/test_scale_out.py) run beat with every periodic task this many seconds apart,
# so that "once per interval" can be watched within a few seconds.
if os.environ.get("TEST_BEAT_INTERVAL_SECONDS"):
    CELERY_BEAT_SCHEDULE = {  # noqa: F405
        name: {**entry, "schedule": float(os.environ["TEST_BEAT_INTERVAL_SECONDS"])}
        for name, entry in CELERY_BEAT_SCHEDULE.items()  # noqa: F405
    }
