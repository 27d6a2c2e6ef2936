"""Prepaid balances. Every change is one conditional UPDATE plus one ledger row, in one transaction.

Postpaid workspaces are never refused: their usage is the `units` of their SMS messages.
"""

from django.db import connection, transaction

from workspaces.audit import SYSTEM_ACTOR, audit_record
from workspaces.errors import InsufficientBalance
from workspaces.models import AuditEvent, LedgerEntry, Workspace

# The most one credit (or an opening balance) may add: far below the column's range, so a typo cannot
# overflow it (units).
CREDIT_UNITS_MAX = 1_000_000_000


def _apply_delta(*, workspace_id: int, delta: int, require_funds: bool) -> int | None:
    """Adds `delta` to the balance in one statement; None when a debit would overdraw.

    One UPDATE ... WHERE balance >= units: concurrent debits queue on the row lock and each re-checks
    the condition against the committed balance, so the balance can never go below zero.
    """
    table = Workspace._meta.db_table
    condition = " AND balance_units + %s >= 0" if require_funds else ""
    params = [delta, workspace_id] + ([delta] if require_funds else [])
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET balance_units = balance_units + %s WHERE id = %s{condition} RETURNING balance_units",
            params,
        )
        row = cursor.fetchone()
    return None if row is None else row[0]


@transaction.atomic
def balance_debit(*, workspace: Workspace, units: int, reference: str) -> int:
    """Takes `units` from a prepaid workspace; raises InsufficientBalance rather than overdraw."""
    balance = _apply_delta(workspace_id=workspace.pk, delta=-units, require_funds=True)
    if balance is None:
        raise InsufficientBalance()
    LedgerEntry.objects.create(
        workspace=workspace,
        delta_units=-units,
        balance_after=balance,
        reason=LedgerEntry.Reason.OTP_SMS,
        reference=reference,
    )
    workspace.balance_units = balance
    return balance


@transaction.atomic
def balance_credit(
    *, workspace: Workspace, units: int, reason: str = LedgerEntry.Reason.CREDIT, actor: str = "", reference: str = ""
) -> int:
    """Adds `units`. A top-up (reason CREDIT) is also audited; refunds of failed SMS are in the ledger only."""
    if units <= 0:
        raise ValueError("units to credit must be positive")
    balance = _apply_delta(workspace_id=workspace.pk, delta=units, require_funds=False)
    if balance is None:  # a credit has no funds condition: only a deleted workspace updates no row
        raise Workspace.DoesNotExist(f"workspace {workspace.pk} no longer exists")
    entry = LedgerEntry.objects.create(
        workspace=workspace, delta_units=units, balance_after=balance, reason=reason, actor=actor, reference=reference
    )
    if reason == LedgerEntry.Reason.CREDIT:
        audit_record(
            actor=actor or SYSTEM_ACTOR,
            action=AuditEvent.Action.BALANCE_CREDITED,
            workspace=workspace,
            target=workspace.slug,
            at=entry.created_at,
            detail={"units": units, "balance_after": balance, "reference": reference, "ledger_entry": entry.pk},
        )
    workspace.balance_units = balance
    return balance


def ledger_record_opening(*, workspace: Workspace, units: int, actor: str) -> None:
    # Audited as part of the workspace.created event of the same transaction, not as a credit.
    LedgerEntry.objects.create(
        workspace=workspace,
        delta_units=units,
        balance_after=workspace.balance_units,
        reason=LedgerEntry.Reason.OPENING,
        actor=actor,
    )
