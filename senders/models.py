import uuid

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

    class Meta:
        ordering = ["name"]
        constraints = [
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
