import uuid

from django.db import models
from django.db.models import F, Q
from django.utils.functional import cached_property

from zeckta.channels import DEFAULT_LOCALE, LOCALE_MAX_LENGTH, Channel


class Purpose(models.TextChoices):
    LOGIN = "LOGIN"
    PASSWORD_RESET = "PASSWORD_RESET"
    TRANSACTION = "TRANSACTION"
    DEVICE_VERIFICATION = "DEVICE_VERIFICATION"
    EMAIL_VERIFICATION = "EMAIL_VERIFICATION"
    ACCOUNT_RECOVERY = "ACCOUNT_RECOVERY"
    KYC_VERIFICATION = "KYC_VERIFICATION"


class OtpSession(models.Model):
    """One issued code. The code itself is never stored: only HMAC(OTP_HASH_KEY, session id + code)."""

    class Status(models.TextChoices):
        PENDING = "PENDING"
        APPROVED = "APPROVED"
        # Validity elapsed, or a newer session replaced this one (reuse disabled).
        EXPIRED = "EXPIRED"
        MAX_ATTEMPTS_REACHED = "MAX_ATTEMPTS_REACHED"
        CANCELED = "CANCELED"  # by the client (POST .../cancel): never reused, verifies as CANCELED

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    # No index of its own: the composite indexes below all start with the workspace.
    # No database foreign keys out of (or into) this table: it is partitioned by day on PostgreSQL (see
    # otp.partitions); Django's collector still cascades and protects.
    workspace = models.ForeignKey(
        "workspaces.Workspace",
        on_delete=models.CASCADE,
        related_name="otp_sessions",
        db_index=False,
        db_constraint=False,
    )
    sender_name = models.ForeignKey(
        "senders.SenderName", on_delete=models.PROTECT, related_name="otp_sessions", db_constraint=False
    )
    dest = models.CharField(max_length=16)  # E.164
    # ISO 3166 region of dest, or "001" for a number of no country (phonenumbers' non-geographic region).
    country = models.CharField(max_length=3, blank=True)
    src = models.CharField(max_length=16)  # sender_name.name as it was when the SMS went out
    purpose = models.CharField(max_length=32, choices=Purpose.choices)
    code_digest = models.CharField(max_length=64, editable=False)  # hex HMAC-SHA256
    status = models.CharField(max_length=24, choices=Status.choices, default=Status.PENDING)
    attempts_used = models.PositiveSmallIntegerField(default=0)
    max_attempts = models.PositiveSmallIntegerField()
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    verified_at = models.DateTimeField(null=True, blank=True)
    # What a resend renders its new code into, as the first send did: the template after the workspace's
    # and the service's defaults were applied (it holds <OTP>, never a code), and the autofill lines.
    message_template = models.TextField(blank=True)
    app_hash = models.CharField(max_length=11, blank=True)
    web_otp_domain = models.CharField(max_length=253, blank=True)
    # TRANSACTION only: {"amount": "125.50", "currency": "GHS", "payee": "..."}, bound into the code's HMAC.
    transaction = models.JSONField(null=True, blank=True)
    resends = models.PositiveSmallIntegerField(default=0)
    # When the next resend may go out; null once the session has used all its resends.
    resend_available_at = models.DateTimeField(null=True, blank=True)
    # Made with a test key (API.md section 10): only test keys see it, and live keys only the others.
    # db_default too: the database functions insert rows without naming it.
    is_test = models.BooleanField(default=False, db_default=False, editable=False)
    # API.md section 15: the language of its texts (resolved: a tag that has texts), and the channel of its
    # latest send. db_default as is_test.
    locale = models.CharField(max_length=LOCALE_MAX_LENGTH, default=DEFAULT_LOCALE, db_default=DEFAULT_LOCALE)
    channel = models.CharField(max_length=8, choices=Channel.choices, default=Channel.SMS, db_default=Channel.SMS)
    # When its latest send falls back to the next channel of the workspace's order unless something says
    # it was delivered (otp.fallback): set with each send while the order holds a channel not yet tried,
    # brought forward to now when the send fails for good, null when nothing is left to fall back to.
    # Kept here, not in a worker's memory, so a restart loses no fallback: the beat scans for it.
    fallback_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "OTP session"
        constraints = [
            # At most one live session per destination and purpose (and mode: a test request never reuses
            # or replaces a live session, nor the reverse): concurrent identical requests cannot both
            # create one. Expiry is a status change because index predicates cannot use now().
            models.UniqueConstraint(
                fields=["workspace", "dest", "purpose", "is_test"],
                condition=Q(status="PENDING"),
                name="otp_otpsession_one_pending_per_destination",
            ),
            models.CheckConstraint(
                condition=Q(attempts_used__lte=F("max_attempts")), name="otp_otpsession_attempts_within_limit"
            ),
            models.CheckConstraint(
                condition=Q(status="APPROVED", verified_at__isnull=False) | ~Q(status="APPROVED"),
                name="otp_otpsession_approved_has_time",
            ),
        ]
        indexes = [
            # The admin's and the dashboard's look-ups of one destination's sessions.
            models.Index(fields=["workspace", "dest", "created_at"], name="otp_session_dest_window_idx"),
            # Purging old sessions.
            models.Index(fields=["created_at"], name="otp_session_created_idx"),
            # The fallback scan (otp.fallback.fallbacks_due): pending sessions whose fallback is due. A
            # session that leaves PENDING leaves the index.
            models.Index(
                fields=["fallback_at"],
                condition=Q(status="PENDING", fallback_at__isnull=False),
                name="otp_session_fallback_due_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.public_id} {self.purpose} → {self.dest} [{self.status}]"

    @property
    def attempts_left(self) -> int:
        return max(self.max_attempts - self.attempts_used, 0)

    @cached_property
    def latest_sms(self) -> "SmsMessage | None":
        """The SMS of the latest send, whose code works (ids follow time); None before the first. Selectors
        read it along with the session and set it here."""
        return self.sms_messages.order_by("-id").first()


class VerifyOutcome(models.TextChoices):
    """What a verify found. Every outcome is an answer the service returns, never an exception: a wrong
    code must leave its used attempt committed whatever the caller does next."""

    APPROVED = "APPROVED"
    INVALID = "INVALID"
    EXPIRED = "EXPIRED"
    MAX_ATTEMPTS_REACHED = "MAX_ATTEMPTS_REACHED"
    ALREADY_USED = "ALREADY_USED"
    CANCELED = "CANCELED"  # the client canceled it (otp_cancel); no attempt used
    NOT_FOUND = "NOT_FOUND"  # no such session in this workspace (another workspace's answers alike)


class SmsMessage(models.Model):
    """The outbox: one row per SMS, the source of truth for delivery. An OTP SMS is written with its
    session; a relayed one (POST /v1/messaging/sms, API.md section 14) has none: its text came whole from
    the client, and `send_before` stands in for the session's validity.

    `encrypted_text` is the rendered SMS encrypted with a key from settings, so a retry delivers the
    same code; it is wiped as soon as delivery ends either way.
    """

    class Status(models.TextChoices):
        QUEUED = "queued"
        PROCESSING = "processing"
        # In the contract's list (API.md section 4), never written: the service has no step between handing
        # an SMS to a provider and the provider taking it, which is `sent`. Nothing may count on it.
        SUBMITTED = "submitted"
        SENT = "sent"
        DELIVERED = "delivered"
        FAILED = "failed"
        UNDELIVERABLE = "undeliverable"
        EXPIRED = "expired"
        REJECTED = "rejected"

    # What a workspace is charged for: the SMS a provider took (`sent`), whatever its receipt said later.
    # `expired` is charged only when a provider took it first (a provider message id), see cockpit.
    PROVIDER_TOOK = frozenset({Status.SENT, Status.DELIVERED, Status.UNDELIVERABLE, Status.REJECTED})
    # A session whose SMS ended so is never reused: its code can never arrive.
    FAILED_FOR_GOOD = frozenset({Status.FAILED, Status.UNDELIVERABLE, Status.REJECTED})
    # Still in the outbox: not handed to a provider yet (the rows otp_sms_pending_idx covers).
    IN_OUTBOX = (Status.QUEUED, Status.PROCESSING)
    TERMINAL = frozenset(
        {Status.SENT, Status.DELIVERED, Status.FAILED, Status.UNDELIVERABLE, Status.EXPIRED, Status.REJECTED}
    )

    # Sent to the gateway as `reference`: its idempotency key, the same on every retry.
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    # One per send: the first, then one per resend. The newest (highest id: ids follow time) is the one
    # whose code works; a resend expires an older one still queued, so a dead code is never sent.
    # Null for a relayed SMS (otp.relay): the service issued no code for it.
    # No foreign key in the database: sessions are partitioned by day on PostgreSQL (otp.partitions), which
    # only lets a key name their whole primary key. Django still cascades a deleted session's SMS.
    session = models.ForeignKey(
        OtpSession, null=True, blank=True, on_delete=models.CASCADE, related_name="sms_messages", db_constraint=False
    )
    # A relayed SMS only: not sent after this (its code, made by the client, is dead by then), as an OTP
    # SMS is not sent once its session expired.
    send_before = models.DateTimeField(null=True, blank=True)
    # A relayed SMS's purpose, when the client named one (db_default: the database function otp_request
    # inserts OTP SMS without naming it).
    purpose = models.CharField(max_length=32, choices=Purpose.choices, blank=True, default="", db_default="")
    workspace = models.ForeignKey(
        "workspaces.Workspace",
        on_delete=models.CASCADE,
        related_name="sms_messages",
        db_index=False,
        db_constraint=False,  # as OtpSession.workspace
    )
    to = models.CharField(max_length=16)
    country = models.CharField(max_length=3, blank=True)  # the session's, for the hourly country ceiling
    src = models.CharField(max_length=16)  # the sender name the phone shows
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    encrypted_text = models.BinaryField(null=True, editable=False)
    encoding = models.CharField(max_length=8)  # GSM-7 or UCS-2
    segments = models.PositiveSmallIntegerField()
    units = models.PositiveSmallIntegerField()
    attempts = models.PositiveSmallIntegerField(default=0)  # calls made to the gateway, on every route
    # The route now carrying it: "" before the first send, a route's public id, or "default" (the SMS_*
    # settings). Failover moves it to the next route not in `routes_tried`, with the same text.
    route_key = models.CharField(max_length=36, blank=True)
    route_name = models.CharField(max_length=64, blank=True)  # shown as delivery.route
    route_attempts = models.PositiveSmallIntegerField(default=0)  # gateway calls on the current route
    routes_tried = models.JSONField(default=list, blank=True)  # route keys given up on
    delivered_at = models.DateTimeField(null=True, blank=True)  # from the delivery receipt
    provider_message_id = models.CharField(max_length=200, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    # Test mode: never sent nor charged, `delivered` at once, its text in the TestInboxMessage beside it.
    # The send limits count test SMS among test SMS only.
    is_test = models.BooleanField(default=False, db_default=False, editable=False)
    # The channel this send goes by (API.md section 15): its route is one of that channel's. For SMS the
    # encrypted text is the SMS; for WhatsApp the code (the template's parameter); for voice what is said.
    channel = models.CharField(max_length=8, choices=Channel.choices, default=Channel.SMS, db_default=Channel.SMS)
    next_attempt_at = models.DateTimeField()  # when a queued row is due (now, or after a retry backoff)
    claimed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "SMS message"
        constraints = [
            # An SMS is an OTP session's, or relayed with a deadline of its own: never neither, never both.
            models.CheckConstraint(
                condition=Q(session__isnull=False, send_before__isnull=True)
                | Q(session__isnull=True, send_before__isnull=False),
                name="otp_smsmessage_session_or_relayed",
            ),
        ]
        indexes = [
            # The per-destination send limit counts a workspace's SMS to one number in a window (resends too).
            models.Index(fields=["workspace", "to", "created_at"], name="otp_sms_dest_window_idx"),
            # The per-country hourly ceiling counts a workspace's SMS to one country.
            models.Index(fields=["workspace", "country", "created_at"], name="otp_sms_country_window_idx"),
            # The sweeper looks for rows still queued or processing long after they were due.
            models.Index(
                fields=["status", "next_attempt_at"],
                condition=Q(status__in=["queued", "processing"]),
                name="otp_sms_pending_idx",
            ),
            # Purging relayed SMS past their retention (an OTP SMS goes with its session).
            models.Index(fields=["created_at"], condition=Q(session__isnull=True), name="otp_sms_relayed_created_idx"),
        ]

    def __str__(self) -> str:
        return f"SMS {self.public_id} → {self.to} [{self.status}]"

    @property
    def relayed(self) -> bool:
        return self.session_id is None


class IdempotencyRecord(models.Model):
    """The first answer to a POST /otp/request sent with an Idempotency-Key, replayed for 24 hours."""

    workspace = models.ForeignKey("workspaces.Workspace", on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64)  # SHA-256 of the canonical request body
    response_status = models.PositiveSmallIntegerField()
    response_body = models.JSONField()  # the envelope without requestId; holds no code or secret
    # Test and live keys have their own key space: the same Idempotency-Key from each is two requests.
    is_test = models.BooleanField(default=False, db_default=False)
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["workspace", "is_test", "key"], name="otp_idempotencyrecord_unique_key"),
        ]
        indexes = [models.Index(fields=["created_at"], name="otp_idempotency_created_idx")]  # purging

    def __str__(self) -> str:
        return f"{self.key} → HTTP {self.response_status}"


class WrongCode(models.Model):
    """One wrong code entered for a destination: the guess budget counts them over all its sessions.

    Kept apart from the session because a session is replaced by the next request; the budget must not be.
    """

    # No database foreign key: partitioned by day on PostgreSQL (otp.partitions), as OtpSession.
    workspace = models.ForeignKey(
        "workspaces.Workspace", on_delete=models.CASCADE, related_name="+", db_constraint=False
    )
    dest = models.CharField(max_length=16)
    # Entered for a test session: counted against the test budget only (db_default: otp_verify() inserts).
    is_test = models.BooleanField(default=False, db_default=False)
    created_at = models.DateTimeField()

    class Meta:
        indexes = [
            # The budget check reads a workspace's newest wrong codes to one destination.
            models.Index(fields=["workspace", "dest", "created_at"], name="otp_wrongcode_dest_window_idx"),
            models.Index(fields=["created_at"], name="otp_wrongcode_created_idx"),  # purging
        ]

    def __str__(self) -> str:
        return f"{self.dest} at {self.created_at:%Y-%m-%d %H:%M:%S}"


class DailySmsCount(models.Model):
    """New OTP SMS a workspace sent on one UTC day: the daily cap is one conditional upsert of this row."""

    workspace = models.ForeignKey("workspaces.Workspace", on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["workspace", "day"], name="otp_dailysmscount_one_per_day"),
        ]

    def __str__(self) -> str:
        return f"{self.day}: {self.count}"


class SmsAttempt(models.Model):
    """One call to a provider for one SMS: kept, whatever happened, with the provider's own words.

    Receipts find their attempt by route and provider message id, so a receipt for an SMS that was sent
    again through a second route applies to the attempt it names only.
    """

    class Status(models.TextChoices):
        # Never stored: an attempt row is written with its outcome, after the call (otp.delivery), one
        # statement less per SMS. A crash mid-call leaves no attempt; its SMS stays `processing` until the
        # sweeper re-claims it and sends again with the same reference.
        SENDING = "sending"
        ACCEPTED = "accepted"  # the provider took it
        FAILED = "failed"  # the provider refused it, or never answered
        SENT = "sent"
        DELIVERED = "delivered"
        UNDELIVERABLE = "undeliverable"
        REJECTED = "rejected"
        EXPIRED = "expired"

    FINAL = frozenset({Status.DELIVERED, Status.UNDELIVERABLE, Status.REJECTED, Status.EXPIRED})

    # No database foreign key, as SmsMessage.session (otp.partitions).
    message = models.ForeignKey(SmsMessage, on_delete=models.CASCADE, related_name="attempt_log", db_constraint=False)
    route = models.ForeignKey(
        "senders.Route", null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_constraint=False
    )
    route_key = models.CharField(max_length=36)  # as on SmsMessage: a route's public id, or "default"
    route_name = models.CharField(max_length=64)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.SENDING)
    provider_message_id = models.CharField(max_length=200, blank=True)
    provider_status = models.CharField(max_length=64, blank=True)
    error_code = models.CharField(max_length=64, blank=True)
    error = models.CharField(max_length=500, blank=True)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    receipt_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["started_at", "id"]
        verbose_name = "SMS attempt"
        indexes = [
            # A receipt names its route and the provider's message id.
            models.Index(fields=["route_key", "provider_message_id"], name="otp_smsattempt_receipt_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.route_name} {self.provider_message_id or '-'} [{self.status}]"


class EarlyReceipt(models.Model):
    """A receipt whose message id no attempt carries yet: the provider answered the callback before the
    worker committed the send. Applied when that send commits; purged after a day."""

    route_key = models.CharField(max_length=36)
    provider_message_id = models.CharField(max_length=200)
    status = models.CharField(max_length=16)
    provider_status = models.CharField(max_length=64, blank=True)
    error_code = models.CharField(max_length=64, blank=True)
    received_at = models.DateTimeField()

    class Meta:
        indexes = [
            models.Index(fields=["route_key", "provider_message_id"], name="otp_earlyreceipt_lookup_idx"),
            models.Index(fields=["received_at"], name="otp_earlyreceipt_received_idx"),  # purging
        ]

    def __str__(self) -> str:
        return f"{self.route_key} {self.provider_message_id} [{self.status}]"


class TestInboxMessage(models.Model):
    """An SMS of test mode (API.md section 10): kept here instead of going to a provider, for the workspace's
    test keys to read back (GET /v1/messaging/test-inbox). The one place a code can be read, so the text
    is encrypted at rest (`otp.crypto.encrypt_inbox_text`) and purged after TEST_INBOX_RETENTION_SECONDS.

    Written with its SmsMessage, in the request's transaction: readable as soon as the request answers.
    """

    __test__ = False  # not a test class, whatever pytest makes of its name

    workspace = models.ForeignKey("workspaces.Workspace", on_delete=models.CASCADE, related_name="+", db_index=False)
    # Null for a relayed test SMS, which has no session.
    # No database foreign key, as SmsMessage.session (otp.partitions).
    session = models.ForeignKey(
        OtpSession, null=True, blank=True, on_delete=models.CASCADE, related_name="+", db_constraint=False
    )
    dest = models.CharField(max_length=16)
    src = models.CharField(max_length=16)
    encrypted_text = models.BinaryField(editable=False)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "test inbox message"
        indexes = [
            # The inbox: a workspace's messages to one destination, newest first.
            models.Index(fields=["workspace", "dest", "created_at"], name="otp_testinbox_dest_idx"),
            models.Index(fields=["created_at"], name="otp_testinbox_created_idx"),  # purging
        ]

    def __str__(self) -> str:
        return f"test SMS → {self.dest} at {self.created_at:%Y-%m-%d %H:%M:%S}"


class ReviewerNumber(models.Model):
    """A number whose OTP is a fixed code and which is never sent an SMS: for app-store reviewers, who must
    log in without a phone of their own. Staff keep them in the admin (each change audited).

    The code is stored encrypted (`otp.crypto.encrypt_reviewer_code`), never in plaintext, and never shown
    again once saved; sessions for the number keep only the HMAC digest, as any session does.
    """

    workspace = models.ForeignKey(
        "workspaces.Workspace", on_delete=models.CASCADE, related_name="reviewer_numbers", db_index=False
    )
    dest = models.CharField(max_length=16, help_text="E.164, e.g. +233202007745.")
    encrypted_code = models.BinaryField(editable=False)
    note = models.CharField(max_length=200, blank=True, help_text="Who uses it and why (an app-store review...).")
    enabled = models.BooleanField(default=True, help_text="Disabled: the number gets real SMS like any other.")
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.CharField(max_length=150, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["workspace", "dest"]
        constraints = [
            models.UniqueConstraint(fields=["workspace", "dest"], name="otp_reviewernumber_one_per_destination"),
        ]

    def __str__(self) -> str:
        return f"reviewer {self.dest}"


class WorkspaceText(models.Model):
    """A workspace's own text for one purpose in one language (API.md section 15), kept by staff in the
    admin. Which one a request gets, before or after the workspace's default template and the service's
    default texts, is otp.templating's (`text_choose`); requests read them from a per-process cache
    (otp.selectors.workspace_texts_get), so the feature costs a request no query."""

    workspace = models.ForeignKey(
        "workspaces.Workspace", on_delete=models.CASCADE, related_name="otp_texts", db_index=False
    )
    purpose = models.CharField(max_length=32, choices=Purpose.choices)
    # Normalised (zeckta.locales.locale_normalise): `pt-BR`, never `pt-br`, so that the lookup matches.
    locale = models.CharField(
        max_length=LOCALE_MAX_LENGTH,
        help_text="A BCP 47 tag: fr, pt-BR. A text for a language (pt) also serves its regions (pt-BR, pt-AO).",
    )
    text = models.TextField(
        help_text="<OTP> exactly once, <MINUTES> (validity in whole minutes) if wanted, and for TRANSACTION "
        "<AMOUNT> and <PAYEE> (then used only for requests that carry a transaction). At most 160 characters."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["workspace", "purpose", "locale"]
        constraints = [
            # Also the index of the cache's read: every text of one workspace.
            models.UniqueConstraint(fields=["workspace", "purpose", "locale"], name="otp_workspacetext_one_per_locale"),
        ]

    def __str__(self) -> str:
        return f"{self.purpose} ({self.locale})"
