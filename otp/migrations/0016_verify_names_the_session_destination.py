"""otp_verify() names the session's number and country in its answer (OUT session_dest, session_country),
so that an approval reaches the fraud guard (API.md section 13: a range or country that converts stays
open) without a second query on the verify path.
"""

from importlib import import_module

from django.db import migrations

OTP_VERIFY = """
-- otp_verify(): a verify in one round trip (otp.services.otp_verify).
-- The one home of this function's text. The newest otp migration that installs it holds a frozen copy
-- (otp.tests.test_sql_functions holds the two equal): change this file, then add a migration with the new copy.
CREATE OR REPLACE FUNCTION otp_verify(
    p_workspace_id bigint,
    p_public_id uuid,
    p_code_digest varchar,  -- the digest of the code typed, bound to this session id
    p_now timestamptz,
    p_transaction_sent boolean,  -- whether the digest covers a transaction the caller named
    p_test boolean,         -- the caller's mode: a session of the other one is NOT_FOUND
    OUT outcome text,       -- a VerifyOutcome value, or TRANSACTION_NEEDED (see below)
    OUT attempts_left integer,
    OUT bound_transaction jsonb,
    OUT session_dest varchar,    -- the session's number and country, when found: an approval is reported
    OUT session_country varchar  -- to the fraud guard (fraud.services.fraud_approval_note) without a query
) LANGUAGE plpgsql AS $$
DECLARE
    s record;
BEGIN
    -- Concurrent verifies of one session queue on this row lock; each sees the previous one's outcome.
    SELECT id, status, expires_at, code_digest, attempts_used, max_attempts, dest, country, transaction INTO s
      FROM otp_otpsession WHERE workspace_id = p_workspace_id AND public_id = p_public_id AND is_test = p_test
       FOR UPDATE;
    IF NOT FOUND THEN
        outcome := 'NOT_FOUND';
        attempts_left := 0;
        RETURN;
    END IF;
    attempts_left := greatest(s.max_attempts - s.attempts_used, 0);
    session_dest := s.dest;
    session_country := s.country;
    IF s.status = 'APPROVED' THEN
        outcome := 'ALREADY_USED';
    ELSIF s.status <> 'PENDING' THEN
        outcome := s.status;  -- EXPIRED, MAX_ATTEMPTS_REACHED or CANCELED
    ELSIF s.expires_at <= p_now THEN
        UPDATE otp_otpsession SET status = 'EXPIRED' WHERE id = s.id;
        outcome := 'EXPIRED';
    ELSIF s.transaction IS NOT NULL AND NOT p_transaction_sent THEN
        -- The code's digest covers the session's transaction, which only the caller's side can hash (the
        -- key never reaches the database): nothing changes, the caller computes it and calls again.
        outcome := 'TRANSACTION_NEEDED';
        bound_transaction := s.transaction;
    ELSIF s.code_digest = p_code_digest THEN
        -- Not constant-time, and need not be: both are HMACs under a key the caller does not know, so
        -- how far they match tells nothing about the code.
        UPDATE otp_otpsession SET status = 'APPROVED', verified_at = p_now WHERE id = s.id;
        outcome := 'APPROVED';
    ELSE
        attempts_left := greatest(attempts_left - 1, 0);
        outcome := CASE WHEN s.attempts_used + 1 >= s.max_attempts THEN 'MAX_ATTEMPTS_REACHED' ELSE 'INVALID' END;
        UPDATE otp_otpsession
           SET attempts_used = attempts_used + 1,
               status = CASE WHEN outcome = 'MAX_ATTEMPTS_REACHED' THEN 'MAX_ATTEMPTS_REACHED' ELSE status END
         WHERE id = s.id;
        -- The destination's guess budget (of the caller's mode) outlives the session.
        INSERT INTO otp_wrongcode (workspace_id, dest, created_at, is_test)
        VALUES (p_workspace_id, s.dest, p_now, p_test);
    END IF;
END
$$;
"""

_PREVIOUS = import_module("otp.migrations.0015_functions_agree_with_python")


def _replace(schema_editor, otp_verify: str) -> None:
    if schema_editor.connection.vendor == "postgresql":
        # Its OUT columns change: CREATE OR REPLACE cannot change a function's result type.
        schema_editor.execute("DROP FUNCTION IF EXISTS otp_verify")
        schema_editor.execute(otp_verify)


def create_function(apps, schema_editor) -> None:
    _replace(schema_editor, OTP_VERIFY)


def restore_previous(apps, schema_editor) -> None:
    _replace(schema_editor, _PREVIOUS.OTP_VERIFY)


class Migration(migrations.Migration):
    dependencies = [("otp", "0015_functions_agree_with_python")]

    operations = [migrations.RunPython(create_function, restore_previous, elidable=False)]
