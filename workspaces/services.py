"""Writes for tenancy: workspaces and their API keys. Each change is audited in its own transaction."""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import slugify
from phonenumbers import COUNTRY_CODE_TO_REGION_CODE

from workspaces.audit import SYSTEM_ACTOR, audit_record, field_changes
from workspaces.billing import CREDIT_UNITS_MAX, ledger_record_opening
from workspaces.errors import ApiKeyNotFound, WorkspaceSlugTaken
from workspaces.keys import EXPIRES_IN_DAYS_MAX, key_digest, key_generate, key_prefix
from workspaces.models import DAILY_SMS_CAP_MAX, ApiKey, AuditEvent, FraudGuardMode, Workspace
from zeckta.channels import FALLBACK_AFTER_SECONDS_MAX, FALLBACK_AFTER_SECONDS_MIN, Channel
from zeckta.errors import ValidationFailed
from zeckta.localcache import local_caches_changed
from zeckta.locales import locale_normalise


def parse_countries(value: str | list[str] | None) -> str:
    if not value:
        return ""
    codes = value.split(",") if isinstance(value, str) else value
    normalized = sorted({code.strip().upper() for code in codes if code.strip()})
    # "001" is in it too: phonenumbers' region for numbers of no country, which a workspace may allow.
    known = {region for regions in COUNTRY_CODE_TO_REGION_CODE.values() for region in regions}
    unknown = [code for code in normalized if code not in known]
    if unknown:
        raise ValidationFailed(f"unknown country code(s): {', '.join(unknown)}")
    return ",".join(normalized)


def parse_channels(value: str | list[str]) -> list[str]:
    """A fallback order (API.md section 15) from `sms,whatsapp,voice` or a list: known channels, each once,
    at least one. ValidationFailed with a one-line message otherwise."""
    names = value.split(",") if isinstance(value, str) else list(value)
    channels = [str(name).strip().lower() for name in names if str(name).strip()]
    if not channels:
        raise ValidationFailed(f"name at least one channel ({', '.join(Channel.values)})")
    unknown = [name for name in channels if name not in Channel.values]
    if unknown:
        raise ValidationFailed(f"unknown channel(s): {', '.join(unknown)} (known: {', '.join(Channel.values)})")
    repeated = sorted({name for name in channels if channels.count(name) > 1})
    if repeated:
        raise ValidationFailed(f"each channel may appear once in the order: {', '.join(repeated)} repeated")
    return channels


def workspace_create(
    *,
    name: str,
    slug: str | None = None,
    otp_reuse_enabled: bool = True,
    otp_validity_seconds: int | None = None,
    otp_max_attempts: int | None = None,
    otp_code_length: int | None = None,
    prepaid_units: int | None = None,
    countries: str | list[str] | None = None,
    daily_sms_cap: int | None = None,
    fraud_guard_mode: str | None = None,
    relay_enabled: bool = False,
    channels: str | list[str] | None = None,
    fallback_after_seconds: int | None = None,
    locale: str | None = None,
    actor: str = SYSTEM_ACTOR,
) -> Workspace:
    """A new workspace with its policy; None keeps a field's default. `daily_sms_cap` 0 is no cap.
    `locale` (a BCP 47 tag, kept normalised: `pt-BR`) is the language of its texts (API.md section 15)."""
    name = name.strip()
    if not name:
        raise ValidationFailed("the workspace name must not be empty")
    slug = slugify(slug or name)
    if not slug:
        raise ValidationFailed("cannot make a slug from that name; pass --slug")
    if prepaid_units is not None and not 0 <= prepaid_units <= CREDIT_UNITS_MAX:
        raise ValidationFailed(f"prepaid units must be between 0 and {CREDIT_UNITS_MAX}")
    if daily_sms_cap is not None and not 0 <= daily_sms_cap <= DAILY_SMS_CAP_MAX:
        raise ValidationFailed(f"the daily SMS cap must be between 0 and {DAILY_SMS_CAP_MAX} (0: no cap)")
    if fraud_guard_mode is not None and fraud_guard_mode not in FraudGuardMode.values:
        raise ValidationFailed(f"the fraud guard mode must be one of {', '.join(FraudGuardMode.values)}")
    if fallback_after_seconds is not None and not (
        FALLBACK_AFTER_SECONDS_MIN <= fallback_after_seconds <= FALLBACK_AFTER_SECONDS_MAX
    ):
        raise ValidationFailed(
            f"the fallback delay must be between {FALLBACK_AFTER_SECONDS_MIN} and {FALLBACK_AFTER_SECONDS_MAX} seconds"
        )
    if locale is not None:
        normalised = locale_normalise(locale)
        if normalised is None:
            raise ValidationFailed(f"the locale {locale!r} is not a BCP 47 language tag (such as en, fr or pt-BR)")
        locale = normalised
    workspace = Workspace(
        name=name,
        slug=slug,
        otp_reuse_enabled=otp_reuse_enabled,
        allowed_countries=parse_countries(countries),
        is_prepaid=prepaid_units is not None,
        balance_units=prepaid_units or 0,
        relay_enabled=relay_enabled,
    )
    for field, value in [
        ("otp_validity_seconds", otp_validity_seconds),
        ("otp_max_attempts", otp_max_attempts),
        ("otp_code_length", otp_code_length),
        ("daily_sms_cap", daily_sms_cap),
        ("fraud_guard_mode", fraud_guard_mode),
        ("channels", parse_channels(channels) if channels is not None else None),
        ("fallback_after_seconds", fallback_after_seconds),
        ("locale", locale),
    ]:
        if value is not None:
            setattr(workspace, field, value)
    try:
        workspace.full_clean()
    except ValidationError as exc:
        raise ValidationFailed(_one_line(exc)) from None
    return _workspace_insert(workspace=workspace, opening_units=prepaid_units or 0, actor=actor)


def workspace_add(*, workspace: Workspace, actor: str = SYSTEM_ACTOR) -> Workspace:
    """Saves a new workspace built and validated elsewhere (the admin's add form), with its audit row."""
    return _workspace_insert(workspace=workspace, opening_units=0, actor=actor)


def _workspace_insert(*, workspace: Workspace, opening_units: int, actor: str) -> Workspace:
    try:
        with transaction.atomic():
            workspace.save(force_insert=True)
            if opening_units:
                ledger_record_opening(workspace=workspace, units=opening_units, actor=actor)
            audit_record(
                actor=actor,
                action=AuditEvent.Action.WORKSPACE_CREATED,
                workspace=workspace,
                target=workspace.slug,
                detail={"name": workspace.name, "prepaid": workspace.is_prepaid, "opening_units": opening_units},
            )
    except IntegrityError:
        raise WorkspaceSlugTaken(f"a workspace with slug {workspace.slug!r} already exists") from None
    return workspace


# What staff may change on a workspace after creation; the balance changes only through billing.
WORKSPACE_EDITABLE_FIELDS = frozenset(
    {
        "name",
        "slug",
        "is_active",
        "otp_reuse_enabled",
        "otp_validity_seconds",
        "otp_max_attempts",
        "otp_code_length",
        "default_message_template",
        "allowed_countries",
        "destination_limit",
        "destination_window_seconds",
        "wrong_code_budget",
        "daily_sms_cap",
        "refuse_fixed_line_and_voip",
        "country_hourly_limit",
        "is_prepaid",
        # The fraud guard's mode and numbers (API.md section 13): every field whose name says so.
        *(field.name for field in Workspace._meta.fields if field.name.startswith("fraud_")),
        "relay_enabled",
        # Channels (API.md section 15).
        "channels",
        "fallback_after_seconds",
        "units_per_sms_segment",
        "units_per_whatsapp_message",
        "units_per_call",
        "locale",
    }
)
API_KEY_EDITABLE_FIELDS = frozenset({"name", "tps", "expires_at"})


@transaction.atomic
def workspace_update(*, workspace: Workspace, values: Mapping[str, Any], actor: str = SYSTEM_ACTOR) -> Workspace:
    """Writes validated policy, status or billing-mode values, audited once with their old and new values.

    Only the fields that change are written: a whole-row save would put back the balance read before
    the edit and undo any debit or credit committed since.
    """
    unknown = set(values) - WORKSPACE_EDITABLE_FIELDS
    if unknown:
        raise ValueError(f"not editable here: {', '.join(sorted(unknown))}")
    current = Workspace.objects.select_for_update().get(pk=workspace.pk)
    changes = field_changes(before={name: getattr(current, name) for name in values}, after=values, fields=values)
    if changes:
        now = timezone.now()
        Workspace.objects.filter(pk=current.pk).update(**{name: values[name] for name in changes}, updated_at=now)
        local_caches_changed()
        audit_record(
            actor=actor,
            action=AuditEvent.Action.WORKSPACE_CHANGED,
            workspace=current,
            target=values.get("slug", current.slug),
            detail={"changes": changes},
            at=now,
        )
    workspace.refresh_from_db()
    return workspace


@transaction.atomic
def api_key_update(*, api_key: ApiKey, values: Mapping[str, Any], actor: str = SYSTEM_ACTOR) -> ApiKey:
    """Changes a key's label, rate or expiry, audited once with the old and new values."""
    unknown = set(values) - API_KEY_EDITABLE_FIELDS
    if unknown:
        raise ValueError(f"not editable here: {', '.join(sorted(unknown))}")
    current = ApiKey.objects.select_for_update(of=("self",)).select_related("workspace").get(pk=api_key.pk)
    changes = field_changes(before={name: getattr(current, name) for name in values}, after=values, fields=values)
    if changes:
        ApiKey.objects.filter(pk=current.pk).update(**{name: values[name] for name in changes})
        local_caches_changed()
        audit_record(
            actor=actor,
            action=AuditEvent.Action.API_KEY_CHANGED,
            workspace=current.workspace,
            target=current.prefix,
            detail={"changes": changes},
        )
    api_key.refresh_from_db()
    return api_key


@dataclass(frozen=True)
class IssuedKey:
    api_key: ApiKey
    raw_key: str  # shown to the operator once; it is not stored


def api_key_issue(
    *,
    workspace: Workspace,
    name: str = "",
    tps: int | None = None,
    expires_in_days: int | None = None,
    test: bool = False,
    actor: str = SYSTEM_ACTOR,
) -> IssuedKey:
    """Creates a key and returns it with the raw key, which exists nowhere else after this call.

    `test`: a zk_test_ key (API.md section 10), whose calls send no SMS, charge nothing and see only the
    sessions of test keys."""
    tps = settings.API_KEY_DEFAULT_TPS if tps is None else tps
    if not 1 <= tps <= settings.API_KEY_MAX_TPS:
        raise ValidationFailed(f"tps must be between 1 and {settings.API_KEY_MAX_TPS}")
    if expires_in_days is not None and not 1 <= expires_in_days <= EXPIRES_IN_DAYS_MAX:
        raise ValidationFailed(f"expires-in-days must be between 1 and {EXPIRES_IN_DAYS_MAX}")
    expires_at = timezone.now() + timedelta(days=expires_in_days) if expires_in_days else None
    while True:
        raw_key = key_generate(test=test)
        try:
            with transaction.atomic():
                api_key = ApiKey.objects.create(
                    workspace=workspace,
                    name=name,
                    prefix=key_prefix(raw_key),
                    digest=key_digest(raw_key),
                    tps=tps,
                    expires_at=expires_at,
                    is_test=test,
                )
                # The prefix only: the raw key and its digest never reach the audit trail.
                audit_record(
                    actor=actor,
                    action=AuditEvent.Action.API_KEY_ISSUED,
                    workspace=workspace,
                    target=api_key.prefix,
                    at=api_key.created_at,
                    detail={
                        "name": name,
                        "tps": tps,
                        "expires_at": expires_at.isoformat() if expires_at else None,
                        **({"mode": "test"} if test else {}),
                    },
                )
        except IntegrityError:
            continue  # a 48-bit prefix collided: draw another key
        return IssuedKey(api_key=api_key, raw_key=raw_key)


@transaction.atomic
def api_key_revoke(*, prefix: str, actor: str = SYSTEM_ACTOR) -> ApiKey:
    """Revokes the key; revoking a revoked key changes nothing and records no audit event."""
    now = timezone.now()
    try:
        api_key = ApiKey.objects.select_related("workspace").get(prefix=prefix)
    except ApiKey.DoesNotExist:
        raise ApiKeyNotFound(f"no API key with prefix {prefix!r}") from None
    # Conditional: revoking twice keeps the first revocation time, and only the first revocation is audited.
    revoked = ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(revoked_at=now)
    if revoked:
        local_caches_changed()
        audit_record(
            actor=actor,
            action=AuditEvent.Action.API_KEY_REVOKED,
            workspace=api_key.workspace,
            target=api_key.prefix,
            detail={"name": api_key.name},
            at=now,
        )
    api_key.refresh_from_db(fields=["revoked_at"])
    return api_key


def _one_line(exc: ValidationError) -> str:
    if hasattr(exc, "message_dict"):
        return "; ".join(f"{field}: {' '.join(messages)}" for field, messages in exc.message_dict.items())
    return " ".join(exc.messages)
