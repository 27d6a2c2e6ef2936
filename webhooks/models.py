import uuid

from django.db import models
from django.db.models import Q

# The longest endpoint URL accepted (characters): longer ones are refused with 400 rather than truncated.
WEBHOOK_URL_MAX_LENGTH = 2000


class Event(models.TextChoices):
    """The events a workspace can subscribe to (API.md section 9)."""

    OTP_SENT = "otp.sent", "A provider accepted the SMS"
    OTP_DELIVERED = "otp.delivered", "The SMS was delivered"
    OTP_DELIVERY_FAILED = "otp.delivery_failed", "The SMS failed for good"
    OTP_APPROVED = "otp.approved", "The right code was entered"
    OTP_MAX_ATTEMPTS_REACHED = "otp.max_attempts_reached", "The last attempt was used by a wrong code"
    OTP_EXPIRED = "otp.expired", "The session expired"
    OTP_CANCELED = "otp.canceled", "The session was canceled"
    FRAUD_BLOCKED = "fraud.blocked", "The fraud guard blocked a number range or a country"


class WebhookEndpoint(models.Model):
    """A URL of a workspace that receives the events it subscribed to, signed with its secret.

    The secret (`whsec_<base64>`) is shown once, when created or rotated, and kept encrypted
    (`webhooks.signing`). After a rotation the previous secret keeps signing beside the new one until
    `previous_secret_expires_at`, so that receivers can switch without losing a message.
    """

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    workspace = models.ForeignKey("workspaces.Workspace", on_delete=models.CASCADE, related_name="webhook_endpoints")
    url = models.CharField("URL", max_length=WEBHOOK_URL_MAX_LENGTH)
    events = models.JSONField(default=list, help_text="The event types it receives.")
    # Fernet over the `whsec_...` text: write-only everywhere, read only to sign.
    encrypted_secret = models.BinaryField(editable=False)
    # `whsec_` and the first characters: enough to tell secrets apart in the admin, too few to sign.
    secret_prefix = models.CharField(max_length=16, editable=False)
    encrypted_previous_secret = models.BinaryField(null=True, editable=False)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Made with a test key (API.md section 10): it receives the events of test sessions only, and only test
    # keys see it; a live endpoint receives live events only and is seen by live keys only.
    is_test = models.BooleanField(default=False, db_default=False, editable=False, verbose_name="test endpoint")
    # Set when a delivery was given up after its retry window; cleared by the next delivery that succeeds.
    failing_since = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at", "pk"]
        verbose_name = "webhook endpoint"
        constraints = [
            models.CheckConstraint(
                condition=Q(encrypted_previous_secret__isnull=True, previous_secret_expires_at__isnull=True)
                | Q(encrypted_previous_secret__isnull=False, previous_secret_expires_at__isnull=False),
                name="webhooks_webhookendpoint_previous_secret_has_expiry",
            ),
        ]

    def __str__(self) -> str:
        return self.url

    @property
    def failing(self) -> bool:
        return self.failing_since is not None


class WebhookDelivery(models.Model):
    """The outbox: one event for one endpoint, written in the transaction of the state change it reports.

    `body` is the exact JSON text sent, fixed when the event is recorded, so every retry sends the same
    bytes under the same `webhook-id` (`msg_` + public_id in hex); only `webhook-timestamp` and the
    signature over it change from one attempt to the next.
    """

    class Status(models.TextChoices):
        PENDING = "pending"  # waiting for its next attempt (next_attempt_at)
        SENDING = "sending"  # claimed by a worker; the call is under way (or the worker died: see the lease)
        DELIVERED = "delivered"  # a 2xx answer
        GIVEN_UP = "given_up", "given up"  # every attempt of the retry window failed

    FINISHED = frozenset({Status.DELIVERED, Status.GIVEN_UP})

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    # No constraint in the database: the emitting transaction (an OTP verify, say) writes deliveries for
    # the endpoints its process has cached, and a foreign key checked at that transaction's commit would
    # fail it when the endpoint was deleted meanwhile. The worker drops a delivery whose endpoint is gone.
    # No index of its own either: webhooks_delivery_endpoint_idx starts with it.
    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries", db_constraint=False, db_index=False
    )
    event_type = models.CharField(max_length=40, choices=Event.choices)
    # An event that can happen once only ("otp.approved:<session id>"): recorded once per endpoint however
    # often the change is reported. Empty for events that can repeat (an SMS sent again).
    event_key = models.CharField(max_length=100, blank=True, default="", editable=False)
    event_at = models.DateTimeField()  # when the event happened: the body's `timestamp`
    body = models.TextField(editable=False)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)  # calls made (or refused at send time) so far
    next_attempt_at = models.DateTimeField()
    # An attempt that fails after this gives the delivery up: WEBHOOK_RETRY_WINDOW_SECONDS after it was
    # recorded (or replayed by staff).
    retry_until = models.DateTimeField()
    claimed_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name = "webhook delivery"
        verbose_name_plural = "webhook deliveries"
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["delivered", "given_up"], finished_at__isnull=False)
                | (~Q(status__in=["delivered", "given_up"]) & Q(finished_at__isnull=True)),
                name="webhooks_webhookdelivery_finished_has_time",
            ),
            models.UniqueConstraint(
                fields=["endpoint", "event_key"],
                condition=~Q(event_key=""),
                name="webhooks_webhookdelivery_one_per_event_key",
            ),
        ]
        indexes = [
            # The sweeper: deliveries due again, or claimed by a worker that died.
            models.Index(
                fields=["status", "next_attempt_at"],
                condition=Q(status__in=["pending", "sending"]),
                name="webhooks_delivery_pending_idx",
            ),
            # An endpoint's recent deliveries (the admin).
            models.Index(fields=["endpoint", "-created_at"], name="webhooks_delivery_endpoint_idx"),
            # The purge of finished deliveries.
            models.Index(
                fields=["finished_at"], condition=Q(finished_at__isnull=False), name="webhooks_delivery_finished_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.webhook_id} [{self.status}]"

    @property
    def webhook_id(self) -> str:
        """The `webhook-id` header: one per event and endpoint, the same on every retry and replay."""
        return f"msg_{self.public_id.hex}"
