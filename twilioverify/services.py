"""The door's two compound steps, each a choice between existing OTP services: never a code, a limit or a
send of its own."""

import uuid

from django.utils import timezone

from otp import services as otp_services
from otp.errors import OtpExpired, OtpSessionNotFound, SessionNotPending
from otp.services import VerifyResult
from otp.transactions import Transaction
from twilioverify.selectors import pending_session_id_get
from workspaces.models import Workspace


def verification_start(
    *,
    workspace: Workspace,
    dest: str,
    src: str,
    purpose: str,
    transaction: Transaction | None,
    app_hash: str | None,
    test: bool,
    actor: str,
    locale: str | None = None,
) -> uuid.UUID:
    """A Verification for `dest`: a fresh code in a new SMS, always.

    With a pending verification for the same number, purpose and transaction, that session is resent
    (API.md section 8: the older code stops working, the resend cooldown and cap hold); otherwise a new
    session is requested, its text in `locale` (Twilio's Locale; a resend keeps the session's language).
    Twilio would send the pending code again, which this service cannot: it never keeps a code it could
    send again.
    """
    pending = pending_session_id_get(
        workspace=workspace, dest=dest, now=timezone.now(), test=test, purpose=purpose, transaction=transaction
    )
    if pending is not None:
        try:
            return otp_services.otp_resend(workspace=workspace, session_id=pending, test=test, actor=actor).session_id
        except (OtpExpired, SessionNotPending):
            pass  # it expired, or was checked or canceled, since it was found: a new session, as if never found
    result = otp_services.otp_request(
        workspace=workspace,
        dest=dest,
        src=src,
        purpose=purpose,
        app_hash=app_hash,
        transaction=transaction,
        locale=locale,
        test=test,
        actor=actor,
    )
    return result.session_id


def verification_check(
    *,
    workspace: Workspace,
    code: str,
    dest: str | None,
    session_id: uuid.UUID | None,
    transaction: Transaction | None,
    test: bool,
) -> VerifyResult:
    """Checks `code` against the session named by `session_id`, else the newest pending one to `dest`.
    Raises OtpSessionNotFound when there is none (Twilio's 20404)."""
    if session_id is None:
        if dest is None:
            raise OtpSessionNotFound()
        session_id = pending_session_id_get(workspace=workspace, dest=dest, now=timezone.now(), test=test)
        if session_id is None:
            raise OtpSessionNotFound()
    return otp_services.otp_verify(
        workspace=workspace, session_id=session_id, code=code, transaction=transaction, test=test
    )
