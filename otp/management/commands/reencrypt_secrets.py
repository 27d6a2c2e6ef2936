"""`manage.py reencrypt_secrets`: rewrites everything stored encrypted under the current keys, the last step
of a key rotation (docs/operations.md, Secrets). In `otp`, the top app: it spans routes, webhooks and OTP.

Run it after deploying the new key with the old one among the fallbacks, on every web and worker machine;
once it reports nothing unreadable, the old key can leave the fallbacks.
"""

from collections.abc import Callable
from typing import Any

from cryptography.fernet import MultiFernet
from django.db.models import Model

from otp.crypto import inbox_fernet, reviewer_code_fernet, sms_copy_fernet
from otp.models import ReviewerNumber, SmsMessage, TestInboxMessage
from senders.models import Route
from senders.routes import route_settings_fernet, routes_changed
from webhooks.models import WebhookEndpoint
from webhooks.signing import secret_fernet
from zeckta.commands import OperatorCommand
from zeckta.crypto import reencrypt_column

# What is stored encrypted: (what operators call it, model, column, its keys).
COLUMNS: list[tuple[str, type[Model], str, Callable[[], MultiFernet]]] = [
    ("route credentials", Route, "encrypted_settings", route_settings_fernet),
    ("webhook signing secrets", WebhookEndpoint, "encrypted_secret", secret_fernet),
    ("previous webhook signing secrets", WebhookEndpoint, "encrypted_previous_secret", secret_fernet),
    ("SMS retry copies", SmsMessage, "encrypted_text", sms_copy_fernet),
    ("test inbox texts", TestInboxMessage, "encrypted_text", inbox_fernet),
    ("reviewer codes", ReviewerNumber, "encrypted_code", reviewer_code_fernet),
]


class Command(OperatorCommand):
    help = (
        "Re-encrypt route credentials, webhook secrets, SMS retry copies, test inbox texts and reviewer codes "
        "under the current keys. Prints a line per kind, then 'reencrypted N, unreadable M': M > 0 means some "
        "values were written under a key that is no longer configured (they stay as they are)."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        total = lost = 0
        for label, model, column, keys in COLUMNS:
            rewritten, unreadable = reencrypt_column(model._default_manager.all(), column, keys())
            self.stdout.write(f"{label}: {rewritten} re-encrypted, {unreadable} unreadable")
            total, lost = total + rewritten, lost + unreadable
        routes_changed()  # this process's cached routes hold the old values (still readable until then)
        self.result(f"reencrypted {total}, unreadable {lost}")
