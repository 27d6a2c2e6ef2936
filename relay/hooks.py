"""The Supabase Auth Send SMS hook (API.md section 14): hooks a workspace makes, and the SMS Supabase asks for.

Supabase makes and checks the code itself and posts it here, signed per Standard Webhooks with the hook's
secret. The service sends it in the workspace's default LOGIN text from its default sender, through
`otp.relay` (the same outbox, routes, limits and units as any SMS). The code travels only inside that
text, encrypted like every SMS text: never in a log line, a column in plaintext or a task argument.
"""

import base64
import logging
import re
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

from cryptography.fernet import MultiFernet
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from otp.idempotency import run_idempotent
from otp.models import Purpose
from otp.relay import sms_relay
from otp.selectors import workspace_texts_get
from otp.templating import text_choose
from relay.errors import (
    HookPayloadInvalid,
    HookSignatureInvalid,
    HookWorkspaceSuspended,
    NoSenderName,
    SupabaseHookLimitReached,
    SupabaseHookNotFound,
)
from relay.models import SupabaseHook
from senders.selectors import sender_name_default
from workspaces.models import Workspace
from zeckta import sms_text
from zeckta.channels import DEFAULT_LOCALE
from zeckta.crypto import fernet_for
from zeckta.db import advisory_xact_lock
from zeckta.errors import ValidationFailed
from zeckta.locales import locale_normalise

logger = logging.getLogger(__name__)

# Supabase's own format: it strips `v1,whsec_` and signs with the base64-decoded rest.
SECRET_PREFIX = "v1,whsec_"  # noqa: S105 (the format's prefix, not a secret)
SECRET_BYTES = 32  # 256 bits, as our own webhook secrets
DISPLAY_CHARACTERS = 4  # of the base64 kept beside the prefix, for the admin
HOOK_PATH = "/hooks/supabase/"
# Supabase's OTP length is 6 by default, configurable; what any SMS code could be.
CODE_RE = re.compile(r"[0-9]{4,10}")
# Ours is a UUID; a Standard Webhooks sender may use any id: what fits beside the hook in an idempotency key.
WEBHOOK_ID_MAX_CHARS = 200

_PURPOSE = b"supabase-hook-secret-v1"


def secret_fernet() -> MultiFernet:
    """The operator's webhook encryption key (or one derived from SECRET_KEY and OTP_HASH_KEY), for this purpose."""
    return fernet_for(_PURPOSE, settings.WEBHOOK_ENCRYPTION_KEY, settings.WEBHOOK_ENCRYPTION_KEY_FALLBACKS)


def hook_url(hook: SupabaseHook, *, base_url: str) -> str:
    """What to paste into Supabase: PUBLIC_URL (else `base_url`, the caller's own) + /hooks/supabase/{hookId}."""
    return f"{settings.PUBLIC_URL or base_url}{HOOK_PATH}{hook.public_id}"


@dataclass(frozen=True)
class HookWithSecret:
    hook: SupabaseHook
    secret: str  # `v1,whsec_<base64>`: shown once, never stored in the clear


def supabase_hook_create(*, workspace: Workspace, test: bool = False) -> HookWithSecret:
    """A new hook and its secret (returned this once). At most SUPABASE_HOOKS_PER_WORKSPACE per mode."""
    encoded = base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()
    secret = SECRET_PREFIX + encoded
    with transaction.atomic():
        # Serialises the workspace's creations, so that two at once cannot both pass the limit.
        advisory_xact_lock(f"supabase-hooks:{workspace.pk}")
        limit = settings.SUPABASE_HOOKS_PER_WORKSPACE
        if SupabaseHook.objects.filter(workspace=workspace, is_test=test).count() >= limit:
            raise SupabaseHookLimitReached(limit)
        hook = SupabaseHook.objects.create(
            workspace=workspace,
            encrypted_secret=secret_fernet().encrypt(encoded.encode()),
            secret_prefix=secret[: len(SECRET_PREFIX) + DISPLAY_CHARACTERS],
            is_test=test,
            created_at=timezone.now(),
        )
    return HookWithSecret(hook, secret)


def supabase_hook_list(*, workspace: Workspace, test: bool = False) -> list[SupabaseHook]:
    return list(SupabaseHook.objects.filter(workspace=workspace, is_test=test))


def supabase_hook_get(*, workspace: Workspace, hook_id: uuid.UUID, test: bool = False) -> SupabaseHook:
    """The workspace's hook of the caller's mode; SupabaseHookNotFound (404) for any other."""
    hook = SupabaseHook.objects.filter(workspace=workspace, public_id=hook_id, is_test=test).first()
    if hook is None:
        raise SupabaseHookNotFound()
    return hook


def supabase_hook_delete(*, workspace: Workspace, hook_id: uuid.UUID, test: bool = False) -> None:
    """Deleted at once: Supabase's next call is answered 404 and sends nothing."""
    deleted, _ = SupabaseHook.objects.filter(workspace=workspace, public_id=hook_id, is_test=test).delete()
    if not deleted:
        raise SupabaseHookNotFound()


@dataclass(frozen=True)
class HookAnswer:
    status: int
    body: dict[str, Any]


def supabase_sms_send(*, hook_id: uuid.UUID, body: bytes, headers: dict[str, str]) -> HookAnswer:
    """One call of Supabase's Send SMS hook: checks its Standard Webhooks signature (`webhook-id`,
    `webhook-timestamp` within 5 minutes, `webhook-signature`), then queues the workspace's default LOGIN
    text with `sms.otp` to `user.phone` (with or without its +) from the workspace's default sender.

    A `webhook-id` already answered within 24 hours sends nothing and gets that first answer. Raises
    SupabaseHookNotFound, HookSignatureInvalid, HookPayloadInvalid, HookWorkspaceSuspended, NoSenderName, or
    what `sms_relay` raises (a send limit, the balance); a refusal records nothing, so Supabase's retry of
    it is tried afresh.
    """
    headers = {name.lower(): value for name, value in headers.items()}  # HTTP header names have no case
    hook = SupabaseHook.objects.select_related("workspace").filter(public_id=hook_id).first()
    if hook is None:
        raise SupabaseHookNotFound()
    payload = _verified(hook, body=body, headers=headers)
    phone, code = _phone_and_code(payload)
    webhook_id = headers["webhook-id"]  # verified present
    if len(webhook_id) > WEBHOOK_ID_MAX_CHARS:
        raise HookPayloadInvalid(f"webhook-id is longer than {WEBHOOK_ID_MAX_CHARS} characters.")
    workspace = hook.workspace
    if not workspace.is_active:
        raise HookWorkspaceSuspended()

    def perform() -> tuple[int, dict]:
        sender = sender_name_default(workspace=workspace)
        if sender is None:
            raise NoSenderName()
        # The workspace's LOGIN text in its own language (API.md section 15): Supabase names no locale.
        template = text_choose(
            purpose=Purpose.LOGIN,
            requested_locale=None,
            workspace_locale=locale_normalise(workspace.locale) or DEFAULT_LOCALE,
            workspace_template=workspace.default_message_template,
            workspace_texts=workspace_texts_get(workspace=workspace),
            transaction=False,
        ).template
        text = sms_text.render(template, code=code, validity_seconds=workspace.otp_validity_seconds)
        try:
            message = sms_relay(
                workspace=workspace, dest=phone, src=sender, text=text, purpose=Purpose.LOGIN, test=hook.is_test
            )
        except ValidationFailed as exc:
            raise HookPayloadInvalid(_field_problems(exc)) from None
        logger.info("Supabase hook %s queued SMS %s", hook.public_id, message.public_id)
        return 200, {}

    answer = run_idempotent(
        workspace=workspace,
        key=f"supabase-hook:{hook.public_id}:{webhook_id}",
        # The same webhook-id is the same call whatever its body: nothing of the body (its code) is kept.
        payload={"supabaseHook": str(hook.public_id)},
        perform=perform,
        test=hook.is_test,
    )
    return HookAnswer(answer.status, answer.body)


def _verified(hook: SupabaseHook, *, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
    encoded = secret_fernet().decrypt(bytes(hook.encrypted_secret)).decode()
    try:
        payload = Webhook(encoded).verify(body, headers)
    except Exception:
        # The library raises its own error for a bad or stale signature, and ValueError or binascii.Error
        # for a header it cannot split or decode: all of them are a signature that does not verify.
        raise HookSignatureInvalid() from None
    if not isinstance(payload, dict):
        raise HookPayloadInvalid("The body must be a JSON object.")
    return payload


def _phone_and_code(payload: dict[str, Any]) -> tuple[str, str]:
    user, sms = payload.get("user"), payload.get("sms")
    phone = user.get("phone") if isinstance(user, dict) else None
    code = sms.get("otp") if isinstance(sms, dict) else None
    if not isinstance(phone, str) or not phone:
        raise HookPayloadInvalid("user.phone is missing.")
    if not isinstance(code, str) or not CODE_RE.fullmatch(code):
        # Never the value: it is the code.
        raise HookPayloadInvalid("sms.otp must be 4 to 10 digits.")
    # Supabase keeps phone numbers without their +.
    return (phone if phone.startswith("+") else f"+{phone}"), code


def _field_problems(exc: ValidationFailed) -> str:
    names = {"dest": "user.phone", "src": "the default sender name"}
    problems = [f"{names.get(field, field)}: {' '.join(messages)}" for field, messages in (exc.errors or {}).items()]
    return "; ".join(problems) or exc.message
