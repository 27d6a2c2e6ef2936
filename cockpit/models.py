"""What the dashboard reads: rollups of the OTP traffic, rebuilt by `cockpit.services.traffic_rollup_refresh`
(beat, every minute) and written nowhere else. Test-mode sessions and SMS are never counted."""

from django.db import models
from django.db.models import F, Q

from zeckta.channels import Channel


class TrafficHour(models.Model):
    """One UTC hour of OTP sessions of one workspace to one country by one channel through one route, with
    their sends (SMS, WhatsApp messages and calls: `sms` and its neighbours count all three).

    Everything is counted in the hour its session was created: a session approved or a send delivered
    later still counts there, so that an hour's conversion compares like with like.

    A session is credited (`requests`, `approved`, `wrong_codes`) to the channel and route of its latest send,
    which for an approved session is the send whose code approved it: a resend or a fallback only goes out
    while the session is PENDING, and each one's fresh code kills the earlier ones. `sessions` counts, per
    channel, each session that had at least one send by it, once, under the route of its latest send by that
    channel: a session that fell back from WhatsApp to SMS counts under both, its approval only under SMS.
    """

    hour = models.DateTimeField()  # the start of the UTC hour
    workspace = models.ForeignKey("workspaces.Workspace", on_delete=models.CASCADE, related_name="+", db_index=False)
    country = models.CharField(max_length=3, blank=True)  # ISO 3166 region of the destination, "001": none
    # The route of the session's latest SMS for requests and approvals, each SMS's own route for the rest;
    # "" for a session with no SMS sent yet (or none at all: a reviewer number).
    route_name = models.CharField(max_length=64, blank=True)
    # The channel of the session's latest send for requests and approvals, each send's own for the rest; ""
    # with the route "" for a session with no send at all (a reviewer number).
    channel = models.CharField(max_length=8, choices=Channel.choices, blank=True, default=Channel.SMS)
    requests = models.PositiveIntegerField(default=0)  # new sessions (a reused answer creates none)
    approved = models.PositiveIntegerField(default=0)  # sessions verified with the right code
    wrong_codes = models.PositiveIntegerField(default=0)  # attempts used by wrong codes
    sessions = models.PositiveIntegerField(default=0)  # sessions with a send by this channel (see above)
    sms = models.PositiveIntegerField(default=0)  # sends written: first sends, resends and fallbacks
    delivered = models.PositiveIntegerField(default=0)  # with a `delivered` receipt
    failed = models.PositiveIntegerField(default=0)  # failed, undeliverable, rejected or expired
    units = models.PositiveBigIntegerField(
        default=0
    )  # of the sends a provider took: what is charged (priced per channel)

    class Meta:
        verbose_name = "traffic hour"
        constraints = [
            # Also the index of the dashboard's reads, which all start with a range of hours.
            models.UniqueConstraint(
                fields=["hour", "workspace", "country", "channel", "route_name"],
                name="cockpit_traffichour_one_row_per_key",
            ),
        ]
        indexes = [
            # A workspace's page reads its own hours.
            models.Index(fields=["workspace", "hour"], name="cockpit_traffic_workspace_idx"),
        ]

    def __str__(self) -> str:
        where = f"{self.country} {self.channel or '-'} {self.route_name or '-'}"
        return f"{self.hour:%Y-%m-%d %H}h {self.workspace_id} {where}"


class NumberSuspect(models.Model):
    """A destination, or a range of numbers (the destination with its last digits hidden), that received the
    most unconverted SMS of a workspace over the pumping window: flagged when too few of its codes came back.
    Its SMS are those of its sessions: each one's first send and its resends.

    SMS pumping (artificially inflated traffic) sends OTP SMS to numbers the fraudster is paid for and never
    types a code: many sends, few approvals, often spread over one range. The list is replaced on each run.
    """

    class Kind(models.TextChoices):
        DESTINATION = "destination"
        RANGE = "range"

    kind = models.CharField(max_length=12, choices=Kind.choices)
    workspace = models.ForeignKey("workspaces.Workspace", on_delete=models.CASCADE, related_name="+")
    country = models.CharField(max_length=3, blank=True)
    # The E.164 number, or for a range its first digits (the rest are any digits).
    number = models.CharField(max_length=16)
    numbers = models.PositiveIntegerField(default=1)  # distinct destinations (1 for a destination)
    sms = models.PositiveIntegerField()
    approved = models.PositiveIntegerField()
    flagged = models.BooleanField(default=False)
    first_sms_at = models.DateTimeField()
    last_sms_at = models.DateTimeField()

    class Meta:
        ordering = ["-flagged", "kind", "-sms", "number"]
        constraints = [
            models.UniqueConstraint(fields=["kind", "workspace", "number"], name="cockpit_numbersuspect_unique"),
            models.CheckConstraint(
                condition=Q(approved__lte=F("sms")), name="cockpit_numbersuspect_approved_within_sms"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.number}: {self.approved}/{self.sms}"

    @property
    def conversion(self) -> float | None:
        return self.approved / self.sms if self.sms else None


class RollupState(models.Model):
    """When the rollups were last rebuilt, and from which hour: one row, locked by each refresh so that two
    beat processes never rebuild at once."""

    name = models.CharField(max_length=32, unique=True)
    refreshed_at = models.DateTimeField(null=True, blank=True)
    rebuilt_from = models.DateTimeField(null=True, blank=True)  # the first hour the last refresh rebuilt
    # When a run last rebuilt every hour that may still change (COCKPIT_ROLLUP_SETTLE_HOURS).
    settled_at = models.DateTimeField(null=True, blank=True)
    took_ms = models.PositiveIntegerField(default=0)  # milliseconds the last refresh took
    # Set when a run stopped at its time budget before the current hour: the next run starts from this hour.
    resume_from = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name} at {self.refreshed_at}"
