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
    -- A session id is a UUIDv7 whose first 48 bits are its creation time in ms (otp.services makes both from
    -- one clock reading): the lookup reads the daily partition(s) around it (otp.partitions). An id of
    -- another version (made before UUIDv7, or made up) is looked up in every partition.
    id_time timestamptz := CASE WHEN substr(p_public_id::text, 15, 1) = '7' THEN to_timestamp(
        ('x' || lpad(replace(left(p_public_id::text, 13), '-', ''), 16, '0'))::bit(64)::bigint / 1000.0) END;
BEGIN
    -- Concurrent verifies of one session queue on this row lock; each sees the previous one's outcome.
    SELECT id, created_at, status, expires_at, code_digest, attempts_used, max_attempts, dest, country,
           transaction INTO s
      FROM otp_otpsession WHERE workspace_id = p_workspace_id AND public_id = p_public_id AND is_test = p_test
       AND created_at >= coalesce(id_time - interval '1 minute', '-infinity')
       AND created_at < coalesce(id_time + interval '1 minute', 'infinity')
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
        UPDATE otp_otpsession SET status = 'EXPIRED' WHERE id = s.id AND created_at = s.created_at;
        outcome := 'EXPIRED';
    ELSIF s.transaction IS NOT NULL AND NOT p_transaction_sent THEN
        -- The code's digest covers the session's transaction, which only the caller's side can hash (the
        -- key never reaches the database): nothing changes, the caller computes it and calls again.
        outcome := 'TRANSACTION_NEEDED';
        bound_transaction := s.transaction;
    ELSIF s.code_digest = p_code_digest THEN
        -- Not constant-time, and need not be: both are HMACs under a key the caller does not know, so
        -- how far they match tells nothing about the code.
        UPDATE otp_otpsession SET status = 'APPROVED', verified_at = p_now
         WHERE id = s.id AND created_at = s.created_at;
        outcome := 'APPROVED';
    ELSE
        attempts_left := greatest(attempts_left - 1, 0);
        outcome := CASE WHEN s.attempts_used + 1 >= s.max_attempts THEN 'MAX_ATTEMPTS_REACHED' ELSE 'INVALID' END;
        UPDATE otp_otpsession
           SET attempts_used = attempts_used + 1,
               status = CASE WHEN outcome = 'MAX_ATTEMPTS_REACHED' THEN 'MAX_ATTEMPTS_REACHED' ELSE status END
         WHERE id = s.id AND created_at = s.created_at;
        -- The destination's guess budget (of the caller's mode) outlives the session.
        INSERT INTO otp_wrongcode (workspace_id, dest, created_at, is_test)
        VALUES (p_workspace_id, s.dest, p_now, p_test);
    END IF;
END
$$;
