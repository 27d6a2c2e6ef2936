import uuid

from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q


class SenderName(models.Model):
    """A sender name ("ZECKTA", a number or a shortcode) a workspace may send from once staff approve it.

    `name` is the text an SMS shows as its sender: the API's `sender` field, and the `src` of an OTP request.
    """

    class Type(models.TextChoices):
        ALPHANUMERIC = "alphanumeric"
        MSISDN = "msisdn"
        SHORTCODE = "shortcode"

    class Status(models.TextChoices):
        PENDING = "PENDING"
        APPROVED = "APPROVED"
        REJECTED = "REJECTED"

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    workspace = models.ForeignKey("workspaces.Workspace", on_delete=models.CASCADE, related_name="sender_names")
    name = models.CharField("sender", max_length=16)
    sender_type = models.CharField(max_length=16, choices=Type.choices, default=Type.ALPHANUMERIC)
    purpose = models.CharField(max_length=500, blank=True, help_text="What the workspace says it sends with it.")
    country_code = models.CharField(max_length=2, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    status_reason = models.CharField(max_length=500, blank=True)
    submitted_at = models.DateTimeField(auto_now_add=True)
    approved_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)
    # Deleted by its workspace: hidden from the API and unusable for sending, but kept, because the OTP
    # sessions that went out under it still refer to it. The same name may be requested again.
    deleted_at = models.DateTimeField(null=True, blank=True, editable=False)
    # The sender of texts whose caller names none (the Supabase hook, API.md section 14); when no name of
    # the workspace is marked, the first approved one serves.
    is_default = models.BooleanField(
        default=False, help_text="Send from this name where the caller names no sender (the Supabase hook)."
    )

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["workspace"],
                condition=Q(is_default=True, deleted_at__isnull=True),
                name="senders_sendername_one_default_per_workspace",
            ),
            models.UniqueConstraint(
                fields=["workspace", "name"],
                condition=Q(deleted_at__isnull=True),
                name="senders_sendername_unique_per_workspace",
            ),
            models.CheckConstraint(
                condition=Q(status="APPROVED", approved_at__isnull=False) | ~Q(status="APPROVED"),
                name="senders_sendername_approved_has_time",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} [{self.status}]"


class Route(models.Model):
    """A way out to the SMS networks: a provider account (backend and credentials) for some countries.

    An SMS takes the enabled route with the lowest priority number that serves its country, and fails
    over to the next on a permanent error; the SMS_BACKEND settings are one more route after all of these,
    serving every country. Credentials are kept encrypted (`senders.routes`), never shown again.
    """

    class Backend(models.TextChoices):
        TWILIO = "twilio"
        VONAGE = "vonage"
        INFOBIP = "infobip"
        AFRICASTALKING = "africastalking"
        SMPP = "smpp"
        HTTP = "http"
        CONSOLE = "console"
        FILE = "file"
        LOCMEM = "locmem"
        LOCMEM_WHATSAPP = "locmem_whatsapp", "Locmem WhatsApp (development)"
        LOCMEM_VOICE = "locmem_voice", "Locmem voice (development)"
        WHATSAPP = "whatsapp", "WhatsApp"
        TWILIO_VOICE = "twilio_voice", "Twilio voice"
        VONAGE_VOICE = "vonage_voice", "Vonage voice"

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=64, unique=True)
    backend = models.CharField(max_length=16, choices=Backend.choices)
    # Fernet over the JSON of the backend's settings (credentials included): write-only everywhere.
    encrypted_settings = models.BinaryField(editable=False)
    countries = models.CharField(
        max_length=500, blank=True, help_text="Comma-separated ISO 3166 alpha-2 codes it serves (GH,NG). Empty: all."
    )
    priority = models.PositiveIntegerField(default=100, help_text="Lower goes first.")
    rate_per_second = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Most SMS per second through this route, across every worker. Empty: no cap.",
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["priority", "name"]
        indexes = [
            # Choosing a route: the enabled ones in priority order.
            models.Index(fields=["enabled", "priority"], name="senders_route_choice_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.backend})"

    @property
    def country_codes(self) -> frozenset[str]:
        return frozenset(code.strip().upper() for code in self.countries.split(",") if code.strip())

    def serves(self, country: str) -> bool:
        return not self.country_codes or country in self.country_codes
