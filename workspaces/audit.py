"""The audit trail: services call `audit_record` inside the transaction of the change they make.

The default actor of a service called without one; callers pass the real one (a staff username,
"command:<name>" or "api:<key prefix>").
"""

from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import Any

from workspaces.keys import looks_like_raw_key
from workspaces.models import AuditEvent, Workspace

SYSTEM_ACTOR = "system"

# Detail keys that would name a secret. `audit_record` refuses them rather than trust every caller.
FORBIDDEN_DETAIL_KEYS = frozenset({"key", "raw_key", "digest", "code", "otp", "secret", "password", "token"})


def audit_record(
    *,
    actor: str,
    action: AuditEvent.Action | str,
    workspace: Workspace | None,
    target: str,
    detail: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> AuditEvent:
    """Writes one audit row. Call it inside the change's transaction: a rollback then removes both.

    Raises ValueError when `detail` looks like it holds a secret (a forbidden key, or a raw API key as a value).
    """
    detail = detail or {}
    _refuse_secrets(detail)
    event = AuditEvent(
        workspace=workspace,
        workspace_slug=workspace.slug if workspace is not None else "",
        actor=(actor or SYSTEM_ACTOR)[:150],
        action=action,
        target=str(target)[:100],
        detail=detail,
    )
    if at is not None:
        event.created_at = at
    event.save(force_insert=True)
    return event


def field_changes(
    *, before: Mapping[str, Any], after: Mapping[str, Any], fields: Iterable[str]
) -> dict[str, dict[str, Any]]:
    """{"field": {"old": ..., "new": ...}} for each of `fields` whose value differs, in JSON's types."""
    return {
        name: {"old": _as_json(before.get(name)), "new": _as_json(after.get(name))}
        for name in fields
        if before.get(name) != after.get(name)
    }


def _as_json(value: Any) -> Any:
    if isinstance(value, date | datetime):
        return value.isoformat()
    return value


def _refuse_secrets(detail: dict[str, Any]) -> None:
    for name, value in detail.items():
        if name.lower() in FORBIDDEN_DETAIL_KEYS:
            raise ValueError(f"audit detail must not hold {name!r}")
        if isinstance(value, str) and looks_like_raw_key(value):
            raise ValueError(f"audit detail {name!r} looks like a raw API key")
