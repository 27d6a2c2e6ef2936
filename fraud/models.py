"""The fraud guard's records (API.md section 13): the blocks it decided, and each workspace's safe list.

A block is the record of one decision, in either mode: `enforce` blocks refuse requests until `ends_at` or
a lift; `shadow` ones only say what enforce would have done. The request path never reads this table: it
asks Redis (`fraud.guard`), where every active block is mirrored with its end as its expiry.
"""

import re

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import F, Q

from workspaces.models import FraudGuardMode, Workspace
from zeckta.db import uuid7

# A range is a number's E.164 form less its last three digits: "+233204123" holds +233204123000-999.
RANGE_DIGITS_DROPPED = 3
# A safe-list entry: "+" and 1 to 15 digits, a whole number or any prefix of one ("+23320").
SAFE_PREFIX_RE = re.compile(r"\+[0-9]{1,15}")


def number_range(dest: str) -> str:
    """The range of an E.164 number: its form less the last three digits."""
    return dest[:-RANGE_DIGITS_DROPPED]


def safe_prefix_valid(value: str) -> None:
    if not SAFE_PREFIX_RE.fullmatch(value):
        raise ValidationError("A number or prefix in E.164 form: + and 1 to 15 digits, such as +23320.")


class FraudBlock(models.Model):
    class Scope(models.TextChoices):
        RANGE = "range", "Number range"
        COUNTRY = "country", "Country"

    class Rule(models.TextChoices):
        RANGE_VELOCITY = "range_velocity", "Range velocity"
        RANGE_CONVERSION = "range_conversion", "Range conversion"
        COUNTRY_VELOCITY = "country_velocity", "Country velocity"
        COUNTRY_CONVERSION = "country_conversion", "Country conversion"

    class Mode(models.TextChoices):
        ENFORCE = FraudGuardMode.ENFORCE.value, "Enforce"
        SHADOW = FraudGuardMode.SHADOW.value, "Shadow"

    public_id = models.UUIDField(default=uuid7, unique=True, editable=False)
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="fraud_blocks")
    scope = models.CharField(max_length=8, choices=Scope.choices)
    # "+233204123" for a range, "GH" (ISO 3166 alpha-2) for a country.
    value = models.CharField(max_length=16)
    rule = models.CharField(max_length=24, choices=Rule.choices)
    mode = models.CharField(max_length=8, choices=Mode.choices)
    created_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    lifted_at = models.DateTimeField(null=True, blank=True)
    lifted_by = models.CharField(max_length=150, blank=True)  # a staff username, or the API key's prefix
    # What tripped the rule: {"sessions": n, "converted": n, "numbers": n}, counted when it tripped.
    evidence = models.JSONField(default=dict)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(scope__in=["range", "country"]), name="fraud_fraudblock_scope_valid"),
            models.CheckConstraint(
                condition=Q(rule__in=["range_velocity", "range_conversion", "country_velocity", "country_conversion"]),
                name="fraud_fraudblock_rule_valid",
            ),
            models.CheckConstraint(condition=Q(mode__in=["enforce", "shadow"]), name="fraud_fraudblock_mode_valid"),
            models.CheckConstraint(condition=Q(ends_at__gt=F("created_at")), name="fraud_fraudblock_ends_after_start"),
            models.CheckConstraint(
                condition=Q(lifted_at__isnull=True) | Q(lifted_at__gte=F("created_at")),
                name="fraud_fraudblock_lifted_after_start",
            ),
        ]
        indexes = [
            # GET /v1/messaging/fraud/blocks: a workspace's decisions of the last 30 days, newest first.
            models.Index(fields=["workspace", "-created_at"], name="fraud_block_ws_created_idx"),
            # Escalation and the Redis mirror: the latest block of one range or country of a workspace.
            models.Index(fields=["workspace", "scope", "value", "-ends_at"], name="fraud_block_ws_target_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.scope} {self.value} ({self.rule}, {self.mode})"


class SafeListEntry(models.Model):
    """A number or prefix the guard never blocks, never refuses and never counts (API.md section 13)."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="fraud_safe_list")
    prefix = models.CharField(max_length=16, validators=[safe_prefix_valid])
    note = models.CharField(max_length=200, blank=True, help_text="Why it is safe: for the next operator.")
    created_by = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["prefix"]
        verbose_name = "safe-list entry"
        verbose_name_plural = "safe list"
        constraints = [
            models.UniqueConstraint(fields=["workspace", "prefix"], name="fraud_safelistentry_unique_prefix"),
            models.CheckConstraint(
                condition=Q(prefix__regex=r"^\+[0-9]{1,15}$"), name="fraud_safelistentry_prefix_e164"
            ),
        ]

    def __str__(self) -> str:
        return self.prefix
