"""Writes for OTP sessions: request a code (or reuse the live one), resend it, verify it, cancel it.

Delivering the SMS is `otp.delivery`'s: a request only writes the outbox row and enqueues it on commit.
The send limits are `otp.limits`', the test inbox and reviewer numbers `otp.testmode`'s, and expiry and
retention `otp.expiry`'s. The fraud guard is `fraud`'s: a live request or resend to an ordinary number
asks it first, and a live approval tells it (`fraud.services`); its rules that read sessions are
`otp.fraudrules`'.

Test mode: every operation takes `test` (the caller's key is a zk_test_ one) and sees the sessions of its
own mode only. A test SMS is never sent, charged or counted towards the daily cap: it is `delivered` at
once and its text kept in the test inbox. A reviewer number's code is its fixed one, and nothing is sent.
"""

import json
import logging
import math
import uuid
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import OuterRef, QuerySet, Subquery
from django.utils import timezone
from psycopg.types.json import Jsonb

from fraud.services import fraud_approval_note, fraud_request_check, fraud_request_unsent
from otp.channels import first_channel, may_fall_back, units_for
from otp.crypto import (
    code_digest,
    code_matches,
    encrypt_inbox_text,
    encrypt_text,
    generate_code,
)
from otp.day_functions import request_function, verify_function
from otp.delivery import sms_enqueue_on_commit, sms_supersede
from otp.destinations import DestinationRefused, destination_check
from otp.errors import (
    OtpExpired,
    OtpSessionNotFound,
    ResendLimitReached,
    ResendTooSoon,
    SessionNotPending,
)
from otp.events import Event, otp_event_emit
from otp.limits import COUNTRY_WINDOW, country_lock, daily_cap_count, dest_lock, send_limit_refuse, send_limits_check
from otp.models import (
    OtpSession,
    SmsMessage,
    VerifyOutcome,
    WrongCode,
)
from otp.partitions import CLOCK_SKEW, MAX_VALIDITY, created_near
from otp.selectors import reviewer_code_get, workspace_texts_get
from otp.templating import default_template, text_choose, voice_text
from otp.testmode import inbox_keep, reviewer_number_used
from otp.transactions import Transaction
from senders.models import SenderName
from senders.selectors import sender_name_get_approved
from webhooks.selectors import webhook_subscribed_to_any
from workspaces.audit import SYSTEM_ACTOR
from workspaces.billing import balance_debit
from workspaces.models import Workspace
from zeckta import metrics, sms_text
from zeckta.channels import DEFAULT_LOCALE, Channel
from zeckta.db import advisory_lock_key, advisory_xact_lock, server_bound_cursor, uuid7
from zeckta.errors import ValidationFailed
from zeckta.locales import LOCALE_ERROR, locale_normalise

logger = logging.getLogger(__name__)

SessionStatus = OtpSession.Status

_FAILED_FOR_GOOD = sorted(SmsMessage.FAILED_FOR_GOOD)  # otp_request()'s parameter, built once


@dataclass(frozen=True)
class OtpRequestResult:
    session_id: uuid.UUID
    expires_at: datetime
    attempts_left: int
    reused: bool
    resend_available_at: datetime | None  # None once no resend is left
    resends: int = 0


def resend_available_at(*, resends: int, now: datetime) -> datetime | None:
    """When the next resend may go out after `resends` of them: the cooldown is OTP_RESEND_COOLDOWN_SECONDS
    after the first send and doubles after each resend (30, 60, 120 s); None once OTP_MAX_RESENDS are used."""
    if resends >= settings.OTP_MAX_RESENDS:
        return None
    return now + timedelta(seconds=settings.OTP_RESEND_COOLDOWN_SECONDS * 2**resends)


@dataclass(frozen=True)
class RenderedSms:
    encrypted_text: bytes
    encoding: str
    segments: int
    units: int = 0  # priced per channel (otp.channels.units_for); set by _rendered_send


def _rendered_send(
    session_like: "NewSession | OtpSession", *, code: str, channel: str, workspace: Workspace, test: bool
) -> RenderedSms:
    """What a send by `channel` carries, encrypted as an SMS's text is (API.md section 15): the SMS itself;
    for WhatsApp the code alone (the template's parameters); for a call what it says. Its units are the
    channel's price: per SMS segment, per WhatsApp message, per call."""
    if channel == Channel.SMS:
        sms = _rendered_sms(session_like, code=code, validity_seconds=workspace.otp_validity_seconds, test=test)
    else:
        text = code if channel == Channel.WHATSAPP else voice_text(code=code, locale=session_like.locale)
        sms = RenderedSms(encrypt_inbox_text(text) if test else encrypt_text(text), "", 1)
    return replace(sms, units=units_for(workspace=workspace, channel=channel, segments=sms.segments))


def _rendered_sms(
    session_like: "NewSession | OtpSession", *, code: str, validity_seconds: int, test: bool
) -> RenderedSms:
    """The SMS for `code`: the template with its placeholders, then the autofill lines. The segments, and
    so the units charged, count the whole of it. Encrypted with the retry copy's key, or for a test SMS
    with the test inbox's (it is read there, never sent)."""
    bound = _transaction_of(session_like)
    text = sms_text.with_autofill(
        sms_text.render(
            session_like.message_template,
            code=code,
            validity_seconds=validity_seconds,
            amount=bound.display_amount if bound else None,
            payee=bound.payee if bound else None,
        ),
        code=code,
        app_hash=session_like.app_hash or None,
        web_otp_domain=session_like.web_otp_domain or None,
    )
    segments = sms_text.count_segments(text)
    encrypted = encrypt_inbox_text(text) if test else encrypt_text(text)
    return RenderedSms(encrypted, segments.encoding, segments.segments)


def _transaction_of(session_like: "NewSession | OtpSession") -> Transaction | None:
    stored = session_like.transaction
    return stored if isinstance(stored, Transaction) or stored is None else Transaction.from_stored(stored)


@dataclass(frozen=True)
class NewSession:
    """Everything a new session and its SMS are written with, prepared before any lock is taken. A reused
    request throws it away: a code and one encryption cost less than a round trip more under the lock."""

    workspace: Workspace
    sender_name: SenderName
    dest: str
    country: str
    purpose: str
    now: datetime
    session_id: uuid.UUID
    code_digest: str
    expires_at: datetime
    message_template: str
    locale: str  # the resolved tag (otp.templating.text_choose)
    app_hash: str
    web_otp_domain: str
    transaction: Transaction | None
    resend_available_at: datetime | None
    sms_id: uuid.UUID
    test: bool
    sms: RenderedSms | None  # None for a reviewer number: its code is fixed and nothing is sent
    channel: str = Channel.SMS  # the first send's (API.md section 15)
    fallback_at: datetime | None = None  # when it falls back to the next channel (otp.fallback)


def otp_request(
    *,
    workspace: Workspace,
    dest: str,
    src: str,
    purpose: str,
    message_template: str | None = None,
    locale: str | None = None,
    app_hash: str | None = None,
    web_otp_domain: str | None = None,
    transaction: Transaction | None = None,
    channel: str | None = None,
    test: bool = False,
    actor: str = SYSTEM_ACTOR,
) -> OtpRequestResult:
    """Issues a code and queues its SMS, or answers with the still-valid session (reuse).

    `channel`: the first send's (API.md section 15); without it, the first of the workspace's fallback order
    that reaches the number (otp.channels.first_channel). A channel with no route for the number's country
    is a validation error on `channel`.

    A live request to an ordinary number first passes the fraud guard (`fraud_request_check`: one Redis
    round trip, no query), before either version of the rules below: DestinationBlocked (403) in enforce.

    `test` (a test key's request): the session is a test one and its SMS goes to the test inbox. To one of
    the workspace's reviewer numbers, the code is the number's fixed one and no SMS is written; the use is
    audited under `actor`. Both run the Python version below, and both meet every send limit, counted
    among their own mode's rows (a reviewer number's wrong codes count in both modes: `otp.limits`).
    A pending session it replaces (expired, reuse off, or its SMS failed for good) is reported as
    `otp.expired`, in the same transaction.

    `app_hash` and `web_otp_domain` add the autofill lines after the text (zeckta.sms_text.with_autofill);
    the segments, and so the units charged, count them too. `transaction` (TRANSACTION requests) fills
    <AMOUNT> and <PAYEE> and is bound into the code's HMAC.

    `locale` (a BCP 47 tag; ValidationFailed on `locale` when malformed) chooses the language of the text:
    it, then its language, then the workspace's locale, then `en`; the text is the request's template, else
    the workspace's own, else the service's default (otp.templating has the whole order). The session keeps
    the tag that had texts, and the template, so that a resend says the same in the same language.

    Everything is written in one transaction: the session, its outbox row and the prepaid debit.
    The SMS task is enqueued only after commit; if the broker is down the outbox row waits for the sweeper.
    """
    try:
        country = destination_check(workspace=workspace, dest=dest)
    except DestinationRefused as exc:
        raise ValidationFailed.for_field("dest", str(exc)) from None
    sender_name = sender_name_get_approved(workspace=workspace, name=src)
    if sender_name is None:
        raise ValidationFailed.for_field("src", "Not an approved sender name of this workspace.")
    channel = first_channel(workspace=workspace, country=country, requested=channel)
    requested_locale = None
    if locale is not None:
        requested_locale = locale_normalise(locale)
        if requested_locale is None:
            raise ValidationFailed.for_field("locale", LOCALE_ERROR)
    chosen = text_choose(
        purpose=purpose,
        requested_locale=requested_locale,
        workspace_locale=locale_normalise(workspace.locale) or DEFAULT_LOCALE,
        workspace_template=workspace.default_message_template,
        workspace_texts=workspace_texts_get(workspace=workspace),
        transaction=transaction is not None,
        message_template=message_template,
    )
    fixed_code = reviewer_code_get(workspace=workspace, dest=dest)
    admission = None
    if not test and fixed_code is None:
        # Before either version of the rules below, in Python: a Redis round trip, no query.
        admission = fraud_request_check(workspace=workspace, dest=dest, country=country, now=timezone.now())
    new = _new_session(
        workspace=workspace,
        sender_name=sender_name,
        dest=dest,
        country=country,
        purpose=purpose,
        template=chosen.template,
        locale=chosen.locale,
        app_hash=app_hash or "",
        web_otp_domain=web_otp_domain or "",
        transaction=transaction,
        channel=channel,
        test=test,
        fixed_code=fixed_code,
    )
    try:
        result = _request_sent_or_reused(new, actor=actor)
    except Exception:
        fraud_request_unsent(admission)  # refused: nothing was sent to the number the guard counted
        raise
    if result.reused:
        fraud_request_unsent(admission)
    return result


def _request_sent_or_reused(new: NewSession, *, actor: str) -> OtpRequestResult:
    if _in_database(new):
        return _request_in_database(new)
    try:
        return _request_in_transaction(new, actor=actor)
    except IntegrityError:
        # Only where no advisory lock serialises requests (SQLite): a concurrent identical request
        # created the pending session first. Run again: it is now reused (or replaced).
        return _request_in_transaction(new, actor=actor)


def _in_database(new: NewSession) -> bool:
    """Whether the request runs as the PostgreSQL function `otp_request` (otp/sql/otp_request.sql): one
    round trip.

    The Python version below keeps the same rules for SQLite and for prepaid workspaces, whose debit and
    ledger row stay in `workspaces.billing`. Test requests and reviewer numbers take it too: the function
    knows only SMS that go to a provider. otp/tests/test_paths_agree.py holds the two versions to the same
    answers (docs/architecture.md, "One home per rule").
    """
    return _database_functions() and not new.workspace.is_prepaid and not new.test and new.sms is not None


def _database_functions() -> bool:
    return settings.OTP_DATABASE_FUNCTIONS and connection.vendor == "postgresql"


def _new_session(
    *,
    workspace: Workspace,
    sender_name: SenderName,
    dest: str,
    country: str,
    purpose: str,
    template: str,
    locale: str,
    app_hash: str,
    web_otp_domain: str,
    transaction: Transaction | None,
    channel: str,
    test: bool,
    fixed_code: str | None,
) -> NewSession:
    now = timezone.now()
    session_id = uuid7(now)  # its time is the session's created_at: the verify reads that day only
    code = fixed_code if fixed_code is not None else generate_code(workspace.otp_code_length)
    new = NewSession(
        workspace=workspace,
        sender_name=sender_name,
        dest=dest,
        country=country,
        purpose=purpose,
        now=now,
        session_id=session_id,
        code_digest=code_digest(session_id, code, transaction),
        expires_at=now + timedelta(seconds=workspace.otp_validity_seconds),
        message_template=template,
        locale=locale,
        app_hash=app_hash,
        web_otp_domain=web_otp_domain,
        transaction=transaction,
        resend_available_at=resend_available_at(resends=0, now=now),
        sms_id=uuid7(now),
        test=test,
        sms=None,
        channel=channel,
    )
    if fixed_code is not None:
        return new  # a reviewer number: nothing to send
    # Rendered from the session's own fields, as a resend renders it.
    sms = _rendered_send(new, code=code, channel=channel, workspace=workspace, test=test)
    return replace(new, sms=sms, fallback_at=_fallback_at(workspace, tried=[channel], now=now, test=test))


def _fallback_at(workspace: Workspace, *, tried: list[str], now: datetime, test: bool) -> datetime | None:
    """When a send falls back to the next channel unless it is delivered first: never in test mode (its
    sends are delivered at once), nor when the order holds no channel not yet tried."""
    if test or not may_fall_back(workspace=workspace, tried=tried):
        return None
    return now + timedelta(seconds=workspace.fallback_after_seconds)


def _request_in_database(new: NewSession) -> OtpRequestResult:
    workspace, sms = new.workspace, new.sms
    assert sms is not None  # _in_database() sends a reviewer number (no SMS) to the Python version
    windows = (
        timedelta(seconds=workspace.destination_window_seconds),
        timedelta(seconds=settings.OTP_WRONG_CODE_WINDOW_SECONDS),
        COUNTRY_WINDOW,
    )
    arguments = {
        "p_workspace_id": workspace.pk,
        "p_dest": new.dest,
        "p_purpose": new.purpose,
        "p_country": new.country,
        "p_now": new.now,
        "p_day": new.now.date(),
        "p_dest_lock": advisory_lock_key(dest_lock(workspace, new.dest)),
        "p_country_lock": advisory_lock_key(country_lock(workspace, new.country)),
        "p_reuse": workspace.otp_reuse_enabled,
        "p_failed_for_good": _FAILED_FOR_GOOD,
        "p_dest_limit": workspace.destination_limit,
        "p_dest_window": windows[0],
        "p_wrong_budget": workspace.wrong_code_budget,
        "p_wrong_window": windows[1],
        "p_country_limit": workspace.country_hourly_limit,
        "p_country_window": windows[2],
        "p_daily_cap": workspace.daily_sms_cap or 0,
        "p_session_public_id": new.session_id,
        "p_sender_name_id": new.sender_name.pk,
        "p_src": new.sender_name.name,
        "p_code_digest": new.code_digest,
        "p_max_attempts": workspace.otp_max_attempts,
        "p_expires_at": new.expires_at,
        "p_sms_public_id": new.sms_id,
        "p_encrypted_text": sms.encrypted_text,
        "p_encoding": sms.encoding,
        "p_segments": sms.segments,
        "p_message_template": new.message_template,
        "p_app_hash": new.app_hash,
        "p_web_otp_domain": new.web_otp_domain,
        "p_transaction": Jsonb(new.transaction.as_dict()) if new.transaction else None,
        "p_resend_available_at": new.resend_available_at,
        "p_channel": new.channel,
        "p_units": sms.units,
        "p_fallback_at": new.fallback_at,
        "p_locale": new.locale,  # API.md section 15 (otp 0019)
    }
    # The function commits on its own; when a webhook would hear of the session it replaces (otp.expired),
    # the event joins its transaction.
    with _events_transaction(workspace, Event.OTP_EXPIRED):
        outcome, wait, session_id, expires_at, attempts_left, resend_at, resends, sms_id, replaced = _call_function(
            request_function(now=new.now, windows=windows),
            returning="outcome, wait_seconds, session_public_id, session_expires_at, session_attempts_left,"
            " session_resend_available_at, session_resends, sms_id, replaced_session_id",
            arguments=arguments,
        )
        if replaced is not None:
            otp_event_emit(
                workspace_id=workspace.pk, session_public_id=replaced, event_type=Event.OTP_EXPIRED, at=new.now
            )
    if outcome in ("reused", "created"):
        if outcome == "created":
            sms_enqueue_on_commit(message_id=sms_id, expires_at=expires_at)
        return OtpRequestResult(
            session_id,
            expires_at,
            attempts_left,
            reused=outcome == "reused",
            resend_available_at=resend_at,
            resends=resends,
        )
    send_limit_refuse(outcome, workspace=workspace, country=new.country, wait=wait or 0, now=new.now)


@transaction.atomic
def _request_in_transaction(new: NewSession, *, actor: str) -> OtpRequestResult:
    workspace, dest, now = new.workspace, new.dest, new.now
    advisory_xact_lock(dest_lock(workspace, dest))
    pending = (
        OtpSession.objects.select_for_update()
        .filter(workspace=workspace, dest=dest, purpose=new.purpose, status=SessionStatus.PENDING, is_test=new.test)
        # At most a day old (a session's validity): as otp_request(), which reads one or two partitions.
        .filter(created_at__gt=now - MAX_VALIDITY, created_at__lt=now + CLOCK_SKEW)
        # Its latest SMS's status, read along (one query): whether its code can still arrive.
        .annotate(
            latest_sms_status=Subquery(
                SmsMessage.objects.filter(
                    session=OuterRef("pk"), created_at__gt=now - MAX_VALIDITY, created_at__lt=now + CLOCK_SKEW
                )
                .order_by("-id")
                .values("status")[:1]
            )
        )
        .first()
    )
    if pending is not None:
        failed_for_good = pending.latest_sms_status in SmsMessage.FAILED_FOR_GOOD
        if workspace.otp_reuse_enabled and pending.expires_at > now and not failed_for_good:
            return OtpRequestResult(
                pending.public_id,
                pending.expires_at,
                pending.attempts_left,
                reused=True,
                resend_available_at=pending.resend_available_at,
                resends=pending.resends,
            )
        # Expired, replaced because reuse is off, or its SMS can never arrive: it can never be approved.
        if OtpSession.objects.filter(pk=pending.pk, created_at=pending.created_at, status=SessionStatus.PENDING).update(
            status=SessionStatus.EXPIRED
        ):
            otp_event_emit(
                workspace_id=workspace.pk, session_public_id=pending.public_id, event_type=Event.OTP_EXPIRED, at=now
            )

    send_limits_check(
        workspace=workspace, dest=dest, country=new.country, now=now, test=new.test, reviewer=new.sms is None
    )

    session = OtpSession.objects.create(
        public_id=new.session_id,
        workspace=workspace,
        sender_name=new.sender_name,
        dest=dest,
        country=new.country,
        src=new.sender_name.name,
        purpose=new.purpose,
        code_digest=new.code_digest,
        max_attempts=workspace.otp_max_attempts,
        created_at=now,
        expires_at=new.expires_at,
        message_template=new.message_template,
        locale=new.locale,
        app_hash=new.app_hash,
        web_otp_domain=new.web_otp_domain,
        transaction=new.transaction.as_dict() if new.transaction else None,
        resend_available_at=new.resend_available_at,
        is_test=new.test,
        channel=new.channel,
        fallback_at=new.fallback_at,
    )
    if new.sms is None:
        reviewer_number_used(session, workspace=workspace, actor=actor, now=now)
    else:
        _send_in_transaction(session, workspace=workspace, new_sms_id=new.sms_id, sms=new.sms, now=now)
    return OtpRequestResult(
        session.public_id,
        session.expires_at,
        session.attempts_left,
        reused=False,
        resend_available_at=session.resend_available_at,
    )


def _send_in_transaction(
    session: OtpSession, *, workspace: Workspace, new_sms_id: uuid.UUID, sms: RenderedSms, now: datetime
) -> None:
    """The outbox row of a send (a session's first, or a resend), its prepaid debit and its count towards
    the daily cap; the send limits were checked by the caller, under the destination's lock. A test
    session's SMS goes to the test inbox instead (`inbox_keep`)."""
    message = SmsMessage(
        public_id=new_sms_id,
        session=session,
        workspace=workspace,
        to=session.dest,
        country=session.country,
        src=session.src,
        encrypted_text=sms.encrypted_text,
        encoding=sms.encoding,
        segments=sms.segments,
        units=sms.units,
        next_attempt_at=now,
        created_at=now,
        updated_at=now,
        is_test=session.is_test,
        channel=session.channel,
    )
    sms_outbox_add(message, workspace=workspace, expires_at=session.expires_at, now=now)


def sms_outbox_add(message: SmsMessage, *, workspace: Workspace, expires_at: datetime, now: datetime) -> None:
    """Writes an SMS into the outbox, an OTP SMS's or a relayed one's (otp.relay): its prepaid debit, its
    count towards the daily cap, and its task on commit (not sent after `expires_at`). A test SMS goes to
    the test inbox instead (`inbox_keep`). Inside the caller's transaction, after its send limits."""
    if message.is_test:
        inbox_keep(message, now=now)
        return
    if workspace.is_prepaid:
        # Raises InsufficientBalance (402): the atomic block rolls back, nothing is sent.
        balance_debit(workspace=workspace, units=message.units, reference=str(message.public_id))
    # Last, as it holds the workspace's counter row until commit: only inserts follow.
    daily_cap_count(workspace=workspace, now=now)
    message.save()
    sms_enqueue_on_commit(message_id=message.pk, expires_at=expires_at)


# --- Resend ------------------------------------------------------------------------------------


class FallbackNotDue(Exception):
    """A fallback (otp.fallback) found, under the session's lock, that its step is over: the session left
    PENDING or expired, another worker fell back already, or a send came after the one it falls back from."""


def otp_resend(
    *,
    workspace: Workspace,
    session_id: uuid.UUID,
    channel: str | None = None,
    test: bool = False,
    actor: str = SYSTEM_ACTOR,
    fallback_from: int | None = None,
) -> OtpRequestResult:
    """A fresh code for a PENDING session, in a new SMS: the old code stops working at once (its digest is
    replaced), the validity starts again, the attempts left stay as they are (a resend never buys guesses).

    A resend is a new OTP SMS for every limit (destination window, wrong-code budget, country ceiling, daily
    cap) and for the prepaid balance. It takes the destination's lock before the session's row lock, the
    order a request takes them in, so a resend and a request for the same number never deadlock; a verify
    or cancel at the same time queues on the row lock and sees the code before or after, never a mix.
    Raises OtpSessionNotFound, DestinationBlocked (the fraud guard, asked before anything else),
    SessionNotPending, OtpExpired, ResendLimitReached, ResendTooSoon, or a send limit's error. A session of
    the other mode (test or live) is not found; a test resend's SMS goes to the test inbox, and a reviewer
    number's "resend" renews its fixed code and sends nothing.

    `channel` (API.md section 15): the new send's; without it, the session's current one. One with no route
    for the number's country is a validation error on `channel`.

    `fallback_from` (otp.fallback only): the id of the send this one falls back from. A fallback is a resend
    the service makes itself: every send limit and the fraud guard count it, but it neither waits for the
    cooldown nor uses one of the client's resends. Under the session's lock it checks that its step is
    still due (FallbackNotDue otherwise), so two workers never fall back twice from one send.
    """
    sessions = OtpSession.objects.filter(
        workspace=workspace, public_id=session_id, is_test=test, **created_near(session_id)
    )
    found = sessions.values_list("dest", "country", "channel").first()
    if found is None:
        raise OtpSessionNotFound()
    dest, country, current_channel = found
    channel = (
        current_channel if channel is None else first_channel(workspace=workspace, country=country, requested=channel)
    )
    fixed_code = reviewer_code_get(workspace=workspace, dest=dest)
    admission = None
    if not test and fixed_code is None:
        admission = fraud_request_check(workspace=workspace, dest=dest, country=country, now=timezone.now())
    try:
        return _resend_in_transaction(
            workspace=workspace,
            sessions=sessions,
            dest=dest,
            fixed_code=fixed_code,
            test=test,
            actor=actor,
            channel=channel,
            fallback_from=fallback_from,
        )
    except Exception:
        fraud_request_unsent(admission)
        raise


def _resend_in_transaction(
    *,
    workspace: Workspace,
    sessions: QuerySet[OtpSession],
    dest: str,
    fixed_code: str | None,
    test: bool,
    actor: str,
    channel: str,
    fallback_from: int | None,
) -> OtpRequestResult:
    code = fixed_code if fixed_code is not None else generate_code(workspace.otp_code_length)
    with transaction.atomic():
        advisory_xact_lock(dest_lock(workspace, dest))
        session = sessions.select_for_update().get()
        now = timezone.now()
        if fallback_from is None:
            _check_resendable(session, now=now)
        else:
            _check_fallback_due(session, step=fallback_from, now=now)
        send_limits_check(
            workspace=workspace, dest=dest, country=session.country, now=now, test=test, reviewer=fixed_code is not None
        )
        if not session.message_template:  # a session from before resends kept no template
            session.message_template = workspace.default_message_template or default_template(
                session.purpose, session.locale
            )
        sms = (
            None
            if fixed_code is not None
            else _rendered_send(session, code=code, channel=channel, workspace=workspace, test=test)
        )
        sms_supersede(session_id=session.pk, now=now)
        session.code_digest = code_digest(session.public_id, code, _transaction_of(session))
        session.expires_at = now + timedelta(seconds=workspace.otp_validity_seconds)
        if fallback_from is None:  # a fallback is the service's, not one of the client's resends
            session.resends += 1
            session.resend_available_at = resend_available_at(resends=session.resends, now=now)
        session.fallback_at = (
            None
            if sms is None
            else _resend_fallback_at(session, workspace=workspace, channel=channel, now=now, test=test)
        )
        session.channel = channel
        session.save(
            update_fields=[
                "code_digest",
                "expires_at",
                "resends",
                "resend_available_at",
                "message_template",
                "channel",
                "fallback_at",
            ]
        )
        if sms is None:
            reviewer_number_used(session, workspace=workspace, actor=actor, now=now)
        else:
            _send_in_transaction(session, workspace=workspace, new_sms_id=uuid7(now), sms=sms, now=now)
    return OtpRequestResult(
        session.public_id,
        session.expires_at,
        session.attempts_left,
        reused=False,
        resend_available_at=session.resend_available_at,
        resends=session.resends,
    )


def _resend_fallback_at(
    session: OtpSession, *, workspace: Workspace, channel: str, now: datetime, test: bool
) -> datetime | None:
    """`_fallback_at` after a resend by `channel`: the channels tried are read only when the order holds
    another channel, so an SMS-only workspace's resend keeps its statements."""
    if test or all(other == channel for other in workspace.channels):
        return None
    tried = [*session.sms_messages.values_list("channel", flat=True).distinct(), channel]
    return _fallback_at(workspace, tried=tried, now=now, test=test)


def _check_fallback_due(session: OtpSession, *, step: int, now: datetime) -> None:
    """A fallback goes on only while its session is PENDING and unexpired, its fallback due, and `step` its
    latest send: read under the row lock, this is what makes a second worker's fallback a no-op."""
    if session.status != SessionStatus.PENDING or session.expires_at <= now:
        raise FallbackNotDue()
    if session.fallback_at is None or session.fallback_at > now:
        raise FallbackNotDue()
    if session.sms_messages.order_by("-id").values_list("pk", flat=True).first() != step:
        raise FallbackNotDue()


def _check_resendable(session: OtpSession, *, now: datetime) -> None:
    if session.status != SessionStatus.PENDING:
        raise SessionNotPending()
    if session.expires_at <= now:
        # Left PENDING: every reader takes a pending session past its expiry as EXPIRED, and a write here
        # would roll back with the refusal anyway.
        raise OtpExpired()
    if session.resend_available_at is None:
        raise ResendLimitReached()
    if session.resend_available_at > now:
        metrics.RATE_LIMITED.labels(reason="resend_cooldown").inc()
        raise ResendTooSoon(retry_after_seconds=math.ceil((session.resend_available_at - now).total_seconds()))


@dataclass(frozen=True)
class VerifyResult:
    outcome: VerifyOutcome
    session_id: uuid.UUID  # as asked, so NOT_FOUND can say which
    attempts_left: int  # 0 for NOT_FOUND
    # The session's number and country, for the fraud guard's approval hook; never in the answer.
    dest: str = ""
    country: str = ""

    @property
    def verified(self) -> bool:
        return self.outcome == VerifyOutcome.APPROVED


def otp_verify(
    *,
    workspace: Workspace,
    session_id: uuid.UUID,
    code: str,
    transaction: Transaction | None = None,
    test: bool = False,
) -> VerifyResult:
    """Checks a code as one atomic state change under a row lock.

    Concurrent calls queue on the lock and each sees the previous one's outcome, so attempts can never
    exceed the limit and a session is approved at most once. A wrong code is also recorded against the
    destination's guess budget, which outlives the session. On PostgreSQL this is the function
    `otp_verify` (otp/sql/otp_verify.sql), one round trip; elsewhere the same steps in Python.

    `transaction`, when given, must be the session's: the code's digest covers it, so another amount or
    payee (or one named for a session without any) is a wrong code. Without it, the session's own is used.
    `test`: the caller's mode; a session of the other mode is NOT_FOUND.
    """
    now = timezone.now()
    if not _database_functions():
        result = _verify_in_transaction(
            workspace=workspace, session_id=session_id, code=code, transaction=transaction, now=now, test=test
        )
        _approval_noted(workspace, result, test=test, now=now)
        return result
    # The function commits on its own; when a webhook would report the outcome, the event joins its
    # transaction (an outbox row written with the change, or neither).
    with _events_transaction(workspace, *_VERIFY_EVENTS.values()):
        outcome, attempts_left, bound, dest, country = _verify_in_database(
            workspace=workspace,
            session_id=session_id,
            digest=code_digest(session_id, code, transaction),
            now=now,
            transaction_sent=transaction is not None,
            test=test,
        )
        if outcome == "TRANSACTION_NEEDED" and bound is not None:
            # A second round trip for a transaction-bound session verified without its transaction only.
            # Django reads jsonb from a raw cursor as its text.
            digest = code_digest(session_id, code, Transaction.from_stored(json.loads(bound)))
            outcome, attempts_left, _, dest, country = _verify_in_database(
                workspace=workspace, session_id=session_id, digest=digest, now=now, transaction_sent=True, test=test
            )
        result = VerifyResult(VerifyOutcome(outcome), session_id, attempts_left, dest or "", country or "")
        if result.outcome in _VERIFY_EVENTS:
            # The function answers MAX_ATTEMPTS_REACHED and EXPIRED alike for the change and for every
            # later call: such events are recorded once per session (otp.events.ONCE_PER_SESSION).
            otp_event_emit(
                workspace_id=workspace.pk,
                session_public_id=session_id,
                event_type=_VERIFY_EVENTS[result.outcome],
                at=now,
            )
    _approval_noted(workspace, result, test=test, now=now)
    return result


def _approval_noted(workspace: Workspace, result: VerifyResult, *, test: bool, now: datetime) -> None:
    """Once an approval committed: its range and country converted (the fraud guard's velocity rules). A
    test session or a reviewer number's never counts (API.md section 13)."""
    if not result.verified or test or reviewer_code_get(workspace=workspace, dest=result.dest) is not None:
        return
    fraud_approval_note(workspace=workspace, dest=result.dest, country=result.country, at=now)


# The outcomes of a verify that change a session's state for good, and the webhook event of each.
_VERIFY_EVENTS = {
    VerifyOutcome.APPROVED: Event.OTP_APPROVED,
    VerifyOutcome.MAX_ATTEMPTS_REACHED: Event.OTP_MAX_ATTEMPTS_REACHED,
    VerifyOutcome.EXPIRED: Event.OTP_EXPIRED,
}


def _events_transaction(workspace: Workspace, *events: str) -> AbstractContextManager:
    """A transaction when an endpoint of the workspace receives one of `events`, else nothing: the hot
    paths keep their one autocommitted statement unless an event must be written with it."""
    if webhook_subscribed_to_any(workspace_id=workspace.pk, event_types=events):
        return transaction.atomic()
    return nullcontext()


def _verify_in_database(
    *, workspace: Workspace, session_id: uuid.UUID, digest: str, now: datetime, transaction_sent: bool, test: bool
) -> tuple[str, int, str | None, str | None, str | None]:
    return _call_function(
        verify_function(session_id=session_id, now=now),
        returning="outcome, attempts_left, bound_transaction, session_dest, session_country",
        arguments={
            "p_workspace_id": workspace.pk,
            "p_public_id": session_id,
            "p_code_digest": digest,
            "p_now": now,
            "p_transaction_sent": transaction_sent,
            "p_test": test,
        },
    )


def _call_function(name: str, *, returning: str, arguments: Mapping[str, Any]) -> tuple[Any, ...]:
    """One call to a function of otp/sql/, its arguments by name (`p_dest => ...`): one added, removed or
    reordered there cannot silently shift the others."""
    named = ", ".join(f"{argument} => %({argument})s" for argument in arguments)
    with server_bound_cursor() as cursor:
        cursor.execute(f"SELECT {returning} FROM {name}({named})", arguments)
        return cursor.fetchone()


@transaction.atomic
def _verify_in_transaction(
    *,
    workspace: Workspace,
    session_id: uuid.UUID,
    code: str,
    transaction: Transaction | None,
    now: datetime,
    test: bool,
) -> VerifyResult:
    session = (
        OtpSession.objects.select_for_update()
        .filter(workspace=workspace, public_id=session_id, is_test=test, **created_near(session_id))
        .first()
    )
    if session is None:
        return VerifyResult(VerifyOutcome.NOT_FOUND, session_id, 0)

    def result(outcome: VerifyOutcome) -> VerifyResult:
        return VerifyResult(outcome, session_id, session.attempts_left, session.dest, session.country)

    def changed(outcome: VerifyOutcome) -> VerifyResult:
        """The outcome of a state change: reported to the workspace's webhooks in this transaction."""
        otp_event_emit(
            workspace_id=workspace.pk, session_public_id=session_id, event_type=_VERIFY_EVENTS[outcome], at=now
        )
        return result(outcome)

    if session.status == SessionStatus.APPROVED:
        return result(VerifyOutcome.ALREADY_USED)
    if session.status == SessionStatus.MAX_ATTEMPTS_REACHED:
        return result(VerifyOutcome.MAX_ATTEMPTS_REACHED)
    if session.status == SessionStatus.EXPIRED:
        return result(VerifyOutcome.EXPIRED)
    if session.status == SessionStatus.CANCELED:
        return result(VerifyOutcome.CANCELED)
    if session.expires_at <= now:
        session.status = SessionStatus.EXPIRED
        session.save(update_fields=["status"])
        return changed(VerifyOutcome.EXPIRED)

    bound = transaction if transaction is not None else _transaction_of(session)
    if code_matches(session.public_id, code, session.code_digest, bound):
        session.status, session.verified_at = SessionStatus.APPROVED, now
        session.save(update_fields=["status", "verified_at"])
        return changed(VerifyOutcome.APPROVED)

    session.attempts_used += 1
    if session.attempts_used >= session.max_attempts:
        session.status = SessionStatus.MAX_ATTEMPTS_REACHED
    session.save(update_fields=["attempts_used", "status"])
    WrongCode.objects.create(workspace_id=session.workspace_id, dest=session.dest, created_at=now, is_test=test)
    if session.status == SessionStatus.MAX_ATTEMPTS_REACHED:
        return changed(VerifyOutcome.MAX_ATTEMPTS_REACHED)
    return result(VerifyOutcome.INVALID)


# --- Cancel ------------------------------------------------------------------------------------


def otp_cancel(*, workspace: Workspace, session_id: uuid.UUID, test: bool = False) -> None:
    """PENDING -> CANCELED in one conditional UPDATE: its code stops working at once, it is never reused,
    and its SMS, if still queued, is never sent (the worker claims only pending sessions' SMS).

    A verify of the same session at the same time holds the row lock; the UPDATE waits for it and then
    re-reads the committed status, so the two end in one order or the other, never both.
    Raises OtpSessionNotFound (404: another workspace's, or the other mode's) or SessionNotPending (409: used,
    locked, canceled or expired).
    """
    now = timezone.now()
    sessions = OtpSession.objects.filter(
        workspace=workspace, public_id=session_id, is_test=test, **created_near(session_id)
    )
    with _events_transaction(workspace, Event.OTP_CANCELED, Event.OTP_EXPIRED):
        if sessions.filter(status=SessionStatus.PENDING, expires_at__gt=now).update(status=SessionStatus.CANCELED):
            otp_event_emit(
                workspace_id=workspace.pk, session_public_id=session_id, event_type=Event.OTP_CANCELED, at=now
            )
            return
        # Expired while pending: written as such, as a verify would (the client sees EXPIRED either way).
        if sessions.filter(status=SessionStatus.PENDING, expires_at__lte=now).update(status=SessionStatus.EXPIRED):
            otp_event_emit(
                workspace_id=workspace.pk, session_public_id=session_id, event_type=Event.OTP_EXPIRED, at=now
            )
    if not sessions.exists():
        raise OtpSessionNotFound()
    raise SessionNotPending()
