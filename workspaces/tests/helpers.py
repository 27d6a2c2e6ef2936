"""Reading the audit trail in tests."""

from workspaces.models import AuditEvent


def events(*actions: str) -> list[AuditEvent]:
    """The events of these actions (all when none is named), oldest first."""
    rows = AuditEvent.objects.order_by("created_at", "id")
    return list(rows.filter(action__in=actions) if actions else rows)


def the_event(action: str) -> AuditEvent:
    [event] = events(action)  # exactly one
    return event


def all_audit_text() -> str:
    return str(list(AuditEvent.objects.values()))
