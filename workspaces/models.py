import operator
import uuid
from collections.abc import Iterable
from functools import reduce

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.html import escape

from zeckta.channels import (
    DEFAULT_LOCALE,
    FALLBACK_AFTER_SECONDS_DEFAULT,
    FALLBACK_AFTER_SECONDS_MAX,
    FALLBACK_AFTER_SECONDS_MIN,
    LOCALE_MAX_LENGTH,
    Channel,
    default_channels,
)

# Bounds of each workspace's OTP policy (API.md section 2): the form validators and the database
# constraints read the same numbers.
OTP_VALIDITY_SECONDS_MIN, OTP_VALIDITY_SECONDS_MAX = 10, 86_400
OTP_ATTEMPTS_MIN, OTP_ATTEMPTS_MAX = 1, 10
OTP_CODE_LENGTH_MIN, OTP_CODE_LENGTH_MAX = 4, 10
DAILY_SMS_CAP_MAX = 100_000_000  # 0 is no cap (API.md section 6)
# The send limits count down from at least one: 0 would be an empty window both versions of the rules
# (otp/sql/otp_request.sql, otp.limits) read past (OFFSET -1 in SQL). No ceiling is spelled 0 for the
# daily cap and NULL for the country ceiling, as their help texts say.
SEND_LIMIT_MIN = 1
# The region phonenumbers gives numbers that belong to no country (+870, +881, +882 ...: satellite and
# international networks). Listed in allowed_countries, it lets a workspace send to them.
NON_GEOGRAPHIC_REGION = "001"
# The fraud guard's numbers (API.md section 13): counts at least 1, percentages 0 to 100, every duration at
# least a second (a replay compresses the clock by shortening them: bench/pumping.py) and at most 30 days.
FRAUD_COUNT_MIN = 1
FRAUD_PERCENT_MAX = 100
FRAUD_SECONDS_MIN, FRAUD_SECONDS_MAX = 1, 30 * 86_400


class FraudGuardMode(models.TextChoices):
    """What the fraud guard does with a decision (API.md section 13)."""

    ENFORCE = "enforce", "Enforce: block and refuse"
    SHADOW = "shadow", "Shadow: record and show, refuse nothing"
    OFF = "off", "Off"


def _all(conditions: Iterable[Q]) -> Q:
    return reduce(operator.and_, conditions)


def _fraud_count(default: int, help_text: str) -> models.PositiveIntegerField:
    return models.PositiveIntegerField(
        default=default, validators=[MinValueValidator(FRAUD_COUNT_MIN)], help_text=help_text
    )


def _fraud_percent(default: int, help_text: str) -> models.PositiveSmallIntegerField:
    return models.PositiveSmallIntegerField(
        default=default, validators=[MaxValueValidator(FRAUD_PERCENT_MAX)], help_text=help_text
    )


def _fraud_seconds(default: int, help_text: str) -> models.PositiveIntegerField:
    return models.PositiveIntegerField(
        default=default,
        validators=[MinValueValidator(FRAUD_SECONDS_MIN), MaxValueValidator(FRAUD_SECONDS_MAX)],
        help_text=help_text,
    )


# Every policy field of the guard, in the order the admin shows them; the constraints below read it.
FRAUD_COUNT_FIELDS = (
    "fraud_range_velocity_numbers",
    "fraud_range_conversion_min_sessions",
    "fraud_country_velocity_numbers",
    "fraud_country_velocity_history_sms",
    "fraud_country_conversion_min_sessions",
    "fraud_country_conversion_baseline_min_sessions",
)
FRAUD_PERCENT_FIELDS = (
    "fraud_range_conversion_max_percent",
    "fraud_country_conversion_max_percent",
    "fraud_country_conversion_baseline_percent",
)
FRAUD_SECONDS_FIELDS = (
    "fraud_conversion_judged_after_seconds",
    "fraud_range_velocity_window_seconds",
    "fraud_range_velocity_block_seconds",
    "fraud_range_conversion_window_seconds",
    "fraud_range_conversion_block_seconds",
    "fraud_country_velocity_window_seconds",
    "fraud_country_velocity_history_seconds",
    "fraud_country_velocity_block_seconds",
    "fraud_country_conversion_window_seconds",
    "fraud_country_conversion_baseline_seconds",
    "fraud_country_conversion_block_seconds",
    "fraud_escalation_memory_seconds",
    "fraud_block_max_seconds",
)


def new_account_sid() -> str:
    """A workspace's account id for the Twilio Verify door (API.md section 14): AC and 32 hex digits."""
    return f"AC{uuid.uuid4().hex}"


def new_service_sid() -> str:
    """Its Verify service id: VA and 32 hex digits."""
    return f"VA{uuid.uuid4().hex}"


class Workspace(models.Model):
    """A tenant: its API keys, sender names and OTP sessions are invisible to every other workspace."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=64, unique=True)
    is_active = models.BooleanField(default=True, help_text="Suspended workspaces get 403 on every call.")
    # The drop-in doors (API.md section 14): fixed at creation, shown in the admin, printed by
    # `manage.py workspace_ids`. Ids, not secrets: a Twilio client sends the account id as its username.
    account_sid = models.CharField(max_length=34, unique=True, default=new_account_sid, editable=False)
    service_sid = models.CharField(max_length=34, unique=True, default=new_service_sid, editable=False)
    relay_enabled = models.BooleanField(
        default=False,
        help_text="Let this workspace's keys send texts they wrote themselves (POST /v1/messaging/sms), for identity "
        "servers that make and check their own codes. Every send limit and the fraud guard still apply.",
    )

    # Channels and languages (API.md section 15).
    channels = models.JSONField(
        default=default_channels,
        help_text="The fallback order: the first send goes by the first channel (or the request's), and when it "
        "fails or nothing says it was delivered, the next one not yet tried gets a fresh code. "
        f"Any of {', '.join(Channel.values)}.",
    )
    fallback_after_seconds = models.PositiveSmallIntegerField(
        default=FALLBACK_AFTER_SECONDS_DEFAULT,
        validators=[MinValueValidator(FALLBACK_AFTER_SECONDS_MIN), MaxValueValidator(FALLBACK_AFTER_SECONDS_MAX)],
        help_text="Seconds to wait for a delivery report before the next channel of the order.",
    )
    locale = models.CharField(
        max_length=LOCALE_MAX_LENGTH,
        default=DEFAULT_LOCALE,
        help_text="The language of the texts when a request names none, or one without texts (a BCP 47 tag: fr, "
        "pt-BR).",
    )
    # Units are priced per channel: what one SMS segment, one WhatsApp message, one call costs.
    units_per_sms_segment = models.PositiveSmallIntegerField(default=1)
    units_per_whatsapp_message = models.PositiveSmallIntegerField(default=1)
    units_per_call = models.PositiveSmallIntegerField(default=1)

    # OTP policy.
    otp_reuse_enabled = models.BooleanField(
        default=True, help_text="Answer a repeated request with the still-valid session instead of a new SMS."
    )
    otp_validity_seconds = models.PositiveIntegerField(
        default=settings.OTP_DEFAULT_VALIDITY_SECONDS,
        validators=[MinValueValidator(OTP_VALIDITY_SECONDS_MIN), MaxValueValidator(OTP_VALIDITY_SECONDS_MAX)],
    )
    otp_max_attempts = models.PositiveSmallIntegerField(
        default=settings.OTP_DEFAULT_MAX_ATTEMPTS,
        validators=[MinValueValidator(OTP_ATTEMPTS_MIN), MaxValueValidator(OTP_ATTEMPTS_MAX)],
    )
    otp_code_length = models.PositiveSmallIntegerField(
        default=settings.OTP_DEFAULT_CODE_LENGTH,
        validators=[MinValueValidator(OTP_CODE_LENGTH_MIN), MaxValueValidator(OTP_CODE_LENGTH_MAX)],
    )
    default_message_template = models.CharField(
        max_length=160,
        blank=True,
        # Escaped: the admin renders help_text as HTML, where a bare <OTP> would vanish as an unknown tag.
        help_text=escape("Used when a request has no messageTemplate. Must contain <OTP> once; may contain <MINUTES>."),
    )
    allowed_countries = models.CharField(
        max_length=500,
        blank=True,
        help_text="Comma-separated ISO 3166 alpha-2 codes (GH,NG); 001 allows numbers of no country (+870, +881, "
        "+882 ...). Empty: every country but those.",
    )
    destination_limit = models.PositiveIntegerField(
        default=settings.OTP_DEFAULT_DESTINATION_LIMIT,
        validators=[MinValueValidator(SEND_LIMIT_MIN)],
        help_text="New OTP SMS allowed to one destination per window.",
    )
    destination_window_seconds = models.PositiveIntegerField(
        default=settings.OTP_DEFAULT_DESTINATION_WINDOW_SECONDS, validators=[MinValueValidator(SEND_LIMIT_MIN)]
    )

    wrong_code_budget = models.PositiveIntegerField(
        default=settings.OTP_DEFAULT_WRONG_CODE_BUDGET,
        validators=[MinValueValidator(SEND_LIMIT_MIN)],
        help_text="Wrong codes one destination may enter across all its sessions in 24 hours; then new sessions "
        "for it are refused until the oldest leaves the window.",
    )
    daily_sms_cap = models.PositiveIntegerField(
        default=settings.OTP_DEFAULT_DAILY_SMS_CAP,
        validators=[MaxValueValidator(DAILY_SMS_CAP_MAX)],
        help_text="New OTP SMS per UTC day for the whole workspace. 0: no cap.",
    )
    refuse_fixed_line_and_voip = models.BooleanField(
        default=False, help_text="Also refuse fixed-line and VoIP numbers (premium-rate and the like always are)."
    )
    country_hourly_limit = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(SEND_LIMIT_MIN)],
        help_text="Most new OTP SMS to any one country per hour. Empty: no ceiling.",
    )

    # Fraud guard (API.md section 13): SMS pumping blocked per number range (E.164 less its last three
    # digits) or country. Defaults are the contract's; every number is the workspace's to tune.
    fraud_guard_mode = models.CharField(
        max_length=8,
        choices=FraudGuardMode.choices,
        default=FraudGuardMode.ENFORCE,
        help_text="Enforce blocks and refuses; shadow records every decision and refuses nothing; off does neither.",
    )
    fraud_conversion_judged_after_seconds = _fraud_seconds(
        120, "A session not approved by this age counts as unconverted (the conversion rules)."
    )
    fraud_range_velocity_numbers = _fraud_count(
        10, "range_velocity: distinct numbers of one range allowed within its window while none is approved."
    )
    fraud_range_velocity_window_seconds = _fraud_seconds(600, "range_velocity: the window.")
    fraud_range_velocity_block_seconds = _fraud_seconds(3600, "range_velocity: how long its block lasts.")
    fraud_range_conversion_min_sessions = _fraud_count(
        20, "range_conversion: judged sessions of one range needed before it can trip."
    )
    fraud_range_conversion_max_percent = _fraud_percent(10, "range_conversion: trips at or below this conversion.")
    fraud_range_conversion_window_seconds = _fraud_seconds(86_400, "range_conversion: the window.")
    fraud_range_conversion_block_seconds = _fraud_seconds(86_400, "range_conversion: how long its block lasts.")
    fraud_country_velocity_numbers = _fraud_count(
        50, "country_velocity: distinct numbers of one country allowed within its window while none is approved."
    )
    fraud_country_velocity_window_seconds = _fraud_seconds(600, "country_velocity: the window.")
    fraud_country_velocity_history_sms = _fraud_count(
        50, "country_velocity: a country the workspace sent at least this many OTP SMS before is not new to it."
    )
    fraud_country_velocity_history_seconds = _fraud_seconds(
        7 * 86_400, "country_velocity: how far back that history looks."
    )
    fraud_country_velocity_block_seconds = _fraud_seconds(3600, "country_velocity: how long its block lasts.")
    fraud_country_conversion_min_sessions = _fraud_count(
        50, "country_conversion: judged sessions of one country needed before it can trip."
    )
    fraud_country_conversion_max_percent = _fraud_percent(10, "country_conversion: trips at or below this conversion.")
    fraud_country_conversion_window_seconds = _fraud_seconds(3600, "country_conversion: the window.")
    fraud_country_conversion_baseline_percent = _fraud_percent(
        50, "country_conversion: only a country that converted at least this well before can trip..."
    )
    fraud_country_conversion_baseline_min_sessions = _fraud_count(
        50, "country_conversion: ... or that had fewer judged sessions than this before."
    )
    fraud_country_conversion_baseline_seconds = _fraud_seconds(
        7 * 86_400, "country_conversion: how far back that baseline looks."
    )
    fraud_country_conversion_block_seconds = _fraud_seconds(3600, "country_conversion: how long its block lasts.")
    fraud_escalation_memory_seconds = _fraud_seconds(
        7 * 86_400, "Blocked again within this time of the last block's end: twice the last block's length."
    )
    fraud_block_max_seconds = _fraud_seconds(7 * 86_400, "The longest a block grows to by escalation.")

    # Billing: postpaid workspaces are counted, never refused; prepaid ones pay from balance_units.
    is_prepaid = models.BooleanField(default=False)
    balance_units = models.BigIntegerField(default=0)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        # Adding money is not the same trust as editing a policy: the admin's credit action needs this.
        permissions = [("credit_balance", "Can credit a prepaid balance")]
        constraints = [
            models.CheckConstraint(
                condition=Q(otp_validity_seconds__gte=OTP_VALIDITY_SECONDS_MIN)
                & Q(otp_validity_seconds__lte=OTP_VALIDITY_SECONDS_MAX),
                name="workspaces_workspace_validity_range",
            ),
            models.CheckConstraint(
                condition=Q(otp_max_attempts__gte=OTP_ATTEMPTS_MIN) & Q(otp_max_attempts__lte=OTP_ATTEMPTS_MAX),
                name="workspaces_workspace_attempts_range",
            ),
            models.CheckConstraint(
                condition=Q(otp_code_length__gte=OTP_CODE_LENGTH_MIN) & Q(otp_code_length__lte=OTP_CODE_LENGTH_MAX),
                name="workspaces_workspace_code_length_range",
            ),
            models.CheckConstraint(
                condition=Q(destination_limit__gte=SEND_LIMIT_MIN),
                name="workspaces_workspace_destination_limit_positive",
            ),
            models.CheckConstraint(
                condition=Q(destination_window_seconds__gte=SEND_LIMIT_MIN),
                name="workspaces_workspace_destination_window_positive",
            ),
            models.CheckConstraint(
                condition=Q(wrong_code_budget__gte=SEND_LIMIT_MIN),
                name="workspaces_workspace_wrong_code_budget_positive",
            ),
            models.CheckConstraint(
                condition=Q(daily_sms_cap__lte=DAILY_SMS_CAP_MAX), name="workspaces_workspace_daily_sms_cap_range"
            ),
            models.CheckConstraint(
                condition=Q(country_hourly_limit__isnull=True) | Q(country_hourly_limit__gte=SEND_LIMIT_MIN),
                name="workspaces_workspace_country_hourly_limit_positive",
            ),
            models.CheckConstraint(
                condition=Q(fallback_after_seconds__gte=FALLBACK_AFTER_SECONDS_MIN)
                & Q(fallback_after_seconds__lte=FALLBACK_AFTER_SECONDS_MAX),
                name="workspaces_workspace_fallback_after_range",
            ),
            models.CheckConstraint(
                condition=Q(fraud_guard_mode__in=FraudGuardMode.values),
                name="workspaces_workspace_fraud_guard_mode_valid",
            ),
            # One constraint per kind of number: a name per field would pass PostgreSQL's 63 characters.
            models.CheckConstraint(
                condition=_all(Q(**{f"{field}__gte": FRAUD_COUNT_MIN}) for field in FRAUD_COUNT_FIELDS),
                name="workspaces_workspace_fraud_counts_positive",
            ),
            models.CheckConstraint(
                condition=_all(Q(**{f"{field}__lte": FRAUD_PERCENT_MAX}) for field in FRAUD_PERCENT_FIELDS),
                name="workspaces_workspace_fraud_percents_range",
            ),
            models.CheckConstraint(
                condition=_all(
                    Q(**{f"{field}__gte": FRAUD_SECONDS_MIN}) & Q(**{f"{field}__lte": FRAUD_SECONDS_MAX})
                    for field in FRAUD_SECONDS_FIELDS
                ),
                name="workspaces_workspace_fraud_seconds_range",
            ),
            models.CheckConstraint(
                condition=Q(account_sid__regex=r"^AC[0-9a-f]{32}$") & Q(service_sid__regex=r"^VA[0-9a-f]{32}$"),
                name="workspaces_workspace_sids_format",
            ),
            # A prepaid workspace never goes below zero: debits are conditional updates.
            models.CheckConstraint(
                condition=Q(is_prepaid=False) | Q(balance_units__gte=0),
                name="workspaces_workspace_prepaid_balance_not_negative",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.slug})"

    @property
    def allowed_country_codes(self) -> frozenset[str]:
        return frozenset(code.strip().upper() for code in self.allowed_countries.split(",") if code.strip())


def tps_within_limit(value: int) -> None:
    """At most API_KEY_MAX_TPS (a setting, read when validating, so raising it needs no migration)."""
    if value > settings.API_KEY_MAX_TPS:
        raise ValidationError(f"Ensure this value is less than or equal to {settings.API_KEY_MAX_TPS}.")


class ApiKey(models.Model):
    """A workspace credential. The raw key is shown once at issue; only its SHA-256 digest is kept
    (the format is `workspaces.keys`)."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100, blank=True)
    # keys.key_prefix(): unique, shown in lists, used for lookup.
    prefix = models.CharField(max_length=32, unique=True, editable=False)
    digest = models.CharField(max_length=64, unique=True, editable=False)  # hex SHA-256 of the raw key
    tps = models.PositiveIntegerField(
        default=settings.API_KEY_DEFAULT_TPS,
        validators=[MinValueValidator(1), tps_within_limit],
        help_text="Requests per second.",
    )
    # A zk_test_ key (API.md section 10): its calls send nothing, charge nothing, and see only test sessions.
    # Fixed at issue, like the prefix that says it.
    is_test = models.BooleanField(default=False, editable=False, verbose_name="test key")
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"
        constraints = [
            models.CheckConstraint(condition=Q(tps__gte=1), name="workspaces_apikey_tps_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.name or 'unnamed'})"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    @property
    def mode(self) -> str:
        return "test" if self.is_test else "live"


class LedgerEntry(models.Model):
    """One change of a prepaid workspace's balance: who or what changed it, why, and the balance after."""

    class Reason(models.TextChoices):
        OPENING = "opening", "Opening balance"
        CREDIT = "credit", "Top-up"
        OTP_SMS = "otp_sms", "OTP SMS"
        REFUND = "refund", "Refund of a failed SMS"

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="ledger_entries")
    delta_units = models.BigIntegerField()  # positive: credit; negative: debit
    balance_after = models.BigIntegerField()
    reason = models.CharField(max_length=16, choices=Reason.choices)
    reference = models.CharField(max_length=100, blank=True)  # the SMS message id, for OTP debits and refunds
    actor = models.CharField(max_length=150, blank=True)  # staff user or "command" for credits
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "ledger entries"
        constraints = [
            models.CheckConstraint(condition=~Q(delta_units=0), name="workspaces_ledgerentry_delta_not_zero"),
        ]
        indexes = [models.Index(fields=["workspace", "created_at"], name="workspaces_ledger_ws_time_idx")]

    def __str__(self) -> str:
        return f"{self.workspace_id} {self.delta_units:+d} → {self.balance_after} ({self.reason})"


class AuditEvent(models.Model):
    """Who did what to which object, and when: one row per operator or API change, written by
    `workspaces.audit.audit_record` in the transaction of the change itself, so a rolled-back change leaves none.

    `detail` is for operators to read: it never holds a raw key, a key digest, an OTP code or any other secret.
    """

    class Action(models.TextChoices):
        WORKSPACE_CREATED = "workspace.created", "Workspace created"
        WORKSPACE_CHANGED = "workspace.changed", "Workspace policy, status or billing changed"
        API_KEY_ISSUED = "api_key.issued", "API key issued"
        API_KEY_REVOKED = "api_key.revoked", "API key revoked"
        API_KEY_CHANGED = "api_key.changed", "API key rate or expiry changed"
        SENDER_SUBMITTED = "sender.submitted", "Sender name submitted"
        SENDER_APPROVED = "sender.approved", "Sender name approved"
        SENDER_REJECTED = "sender.rejected", "Sender name rejected"
        SENDER_UPDATED = "sender.updated", "Sender name updated"
        SENDER_DELETED = "sender.deleted", "Sender name deleted"
        BALANCE_CREDITED = "balance.credited", "Balance credited"
        ROUTE_ADDED = "route.added", "Provider route added"
        ROUTE_CHANGED = "route.changed", "Provider route changed"
        WEBHOOK_CREATED = "webhook.created", "Webhook endpoint created"
        WEBHOOK_SECRET_ROTATED = "webhook.secret_rotated", "Webhook secret rotated"
        WEBHOOK_CHANGED = "webhook.changed", "Webhook endpoint changed"
        WEBHOOK_DELETED = "webhook.deleted", "Webhook endpoint deleted"
        WEBHOOK_REPLAYED = "webhook.replayed", "Webhook delivery replayed"
        REVIEWER_NUMBER_ADDED = "reviewer_number.added", "Reviewer number added"
        REVIEWER_NUMBER_CHANGED = "reviewer_number.changed", "Reviewer number changed"
        REVIEWER_NUMBER_DELETED = "reviewer_number.deleted", "Reviewer number deleted"
        REVIEWER_NUMBER_USED = "reviewer_number.used", "Reviewer number used (nothing sent)"
        FRAUD_BLOCK_LIFTED = "fraud_block.lifted", "Fraud-guard block lifted"
        SAFE_LIST_ADDED = "safe_list.added", "Safe-list entry added"
        SAFE_LIST_REMOVED = "safe_list.removed", "Safe-list entry removed"

    # SET_NULL and a copy of the slug: the trail outlives a deleted workspace and still says whose it was.
    workspace = models.ForeignKey(
        Workspace, null=True, blank=True, on_delete=models.SET_NULL, related_name="audit_events"
    )
    workspace_slug = models.CharField(max_length=64, blank=True)
    # A staff username, "command:<name>" for a management command, or "api:<key prefix>" for the public API.
    actor = models.CharField(max_length=150)
    action = models.CharField(max_length=32, choices=Action.choices)
    target = models.CharField(max_length=100, blank=True)  # the key prefix, senderNameId or workspace slug
    detail = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=~Q(actor=""), name="workspaces_auditevent_actor_not_empty"),
        ]
        indexes = [
            # The admin list filtered by workspace, newest first.
            models.Index(fields=["workspace", "created_at"], name="workspaces_auditevent_ws_idx"),
            # The unfiltered admin list, newest first.
            models.Index(fields=["created_at"], name="workspaces_auditevent_time_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.actor} {self.action} {self.target}"
