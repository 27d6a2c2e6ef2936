-- otp_request(): a live OTP request in one round trip (otp.services.otp_request).
-- The one home of this function's text. The newest otp migration that installs it holds a frozen copy
-- (otp.tests.test_sql_functions holds the two equal): change this file, then add a migration with the new copy.
CREATE OR REPLACE FUNCTION otp_request(
    p_workspace_id bigint,
    p_dest varchar,
    p_purpose varchar,
    p_country varchar,
    p_now timestamptz,
    p_day date,                      -- the UTC day the daily cap counts
    p_dest_lock bigint,              -- advisory lock keys, as zeckta.db.advisory_xact_lock derives them
    p_country_lock bigint,
    p_reuse boolean,
    p_failed_for_good varchar[],     -- SMS statuses after which a session is never reused
    p_dest_limit integer,
    p_dest_window interval,
    p_wrong_budget integer,
    p_wrong_window interval,
    p_country_limit integer,         -- NULL (or 0, as otp.limits reads it): no hourly ceiling
    p_country_window interval,
    p_daily_cap integer,             -- 0: no cap
    p_session_public_id uuid,
    p_sender_name_id bigint,
    p_src varchar,
    p_code_digest varchar,
    p_max_attempts integer,
    p_expires_at timestamptz,
    p_sms_public_id uuid,
    p_encrypted_text bytea,
    p_encoding varchar,
    p_segments integer,
    p_message_template text,         -- kept for resends, with the autofill lines and the transaction
    p_app_hash varchar,
    p_web_otp_domain varchar,
    p_transaction jsonb,
    p_resend_available_at timestamptz,
    p_channel varchar,               -- the first send's channel (API.md section 15), on the session and its send
    p_units integer,                 -- what the send costs, priced per channel (otp.channels.units_for)
    p_fallback_at timestamptz,       -- when it falls back to the next channel; NULL: nothing to fall back to
    p_locale varchar,                -- the session's language, resolved by otp.templating (API.md section 15)
    -- 'created' or 'reused' with the session; else the refused limit and seconds until it reopens.
    OUT outcome text,
    OUT wait_seconds integer,
    OUT session_public_id uuid,
    OUT session_expires_at timestamptz,
    OUT session_attempts_left integer,
    OUT session_resend_available_at timestamptz,
    OUT session_resends integer,
    OUT sms_id bigint,
    OUT replaced_session_id uuid     -- the pending session this one replaced: the caller reports otp.expired
) LANGUAGE plpgsql AS $$
DECLARE
    pending record;
    has_pending boolean;
    edge timestamptz;  -- the creation time of the oldest row that fills a window
    new_session_id bigint;
BEGIN
    -- Two identical requests at once: the second waits here, then finds the first one's session.
    PERFORM pg_advisory_xact_lock(p_dest_lock);
    SELECT s.id, s.created_at, s.public_id, s.expires_at, s.attempts_used, s.max_attempts, s.resend_available_at,
           s.resends,
           -- Its latest SMS (a resend adds one): whether that one failed for good. Read through the
           -- session_id index; a join on max(id) let the planner hash the whole SMS table instead.
           (SELECT m.status FROM otp_smsmessage m
             WHERE m.session_id = s.id AND m.created_at > p_now - interval '86400 seconds'
               AND m.created_at < p_now + interval '1 minute'
             ORDER BY m.id DESC LIMIT 1)
               AS sms_status
      INTO pending
      FROM otp_otpsession s
     WHERE s.workspace_id = p_workspace_id AND s.dest = p_dest AND s.purpose = p_purpose
       AND s.status = 'PENDING' AND NOT s.is_test
       -- A session is valid at most a day (workspaces_workspace_validity_range): nothing older can be
       -- reused; nothing is newer than now, give or take the web machines' clocks (within a minute, NTP).
       -- The bounds let PostgreSQL read one or two daily partitions (otp.partitions), not the days ahead.
       AND s.created_at > p_now - interval '86400 seconds' AND s.created_at < p_now + interval '1 minute';
    -- Read without a row lock: a reused request writes nothing, so its transaction gets no id and its commit
    -- waits for no WAL flush, which the destination's advisory lock would otherwise hold through. A verify
    -- or cancel that commits meanwhile simply comes after this read; the replacement below re-checks.
    has_pending := FOUND;
    IF has_pending AND p_reuse AND pending.expires_at > p_now
       AND (pending.sms_status IS NULL OR NOT pending.sms_status = ANY (p_failed_for_good)) THEN
        outcome := 'reused';
        session_public_id := pending.public_id;
        session_expires_at := pending.expires_at;
        session_attempts_left := greatest(pending.max_attempts - pending.attempts_used, 0);
        session_resend_available_at := pending.resend_available_at;
        session_resends := pending.resends;
        RETURN;
    END IF;

    -- The limits write nothing, so a refusal leaves no trace. They count live SMS, resends included.
    SELECT created_at INTO edge FROM otp_smsmessage
     WHERE workspace_id = p_workspace_id AND "to" = p_dest AND NOT is_test
       AND created_at > p_now - p_dest_window AND created_at < p_now + interval '1 minute'
     ORDER BY created_at DESC OFFSET p_dest_limit - 1 LIMIT 1;
    IF FOUND THEN
        outcome := 'destination_limited';
        wait_seconds := ceil(extract(epoch FROM edge + p_dest_window - p_now));
        RETURN;
    END IF;
    SELECT created_at INTO edge FROM otp_wrongcode
     WHERE workspace_id = p_workspace_id AND dest = p_dest AND NOT is_test
       AND created_at > p_now - p_wrong_window AND created_at < p_now + interval '1 minute'
     ORDER BY created_at DESC OFFSET p_wrong_budget - 1 LIMIT 1;
    IF FOUND THEN
        outcome := 'guesses_limited';
        wait_seconds := ceil(extract(epoch FROM edge + p_wrong_window - p_now));
        RETURN;
    END IF;
    IF p_country_limit > 0 AND p_country <> '' THEN
        PERFORM pg_advisory_xact_lock(p_country_lock);  -- always after the destination's: no deadlock
        SELECT created_at INTO edge FROM otp_smsmessage
         WHERE workspace_id = p_workspace_id AND country = p_country
           AND created_at > p_now - p_country_window AND created_at < p_now + interval '1 minute'
           AND NOT is_test
         ORDER BY created_at DESC OFFSET p_country_limit - 1 LIMIT 1;
        IF FOUND THEN
            outcome := 'country_limited';
            wait_seconds := ceil(extract(epoch FROM edge + p_country_window - p_now));
            RETURN;
        END IF;
    END IF;
    IF p_daily_cap > 0 THEN
        -- Conditional upsert: concurrent requests queue on the counter row, the cap holds exactly.
        INSERT INTO otp_dailysmscount AS counter (workspace_id, day, count) VALUES (p_workspace_id, p_day, 1)
        ON CONFLICT (workspace_id, day) DO UPDATE SET count = counter.count + 1 WHERE counter.count < p_daily_cap;
        IF NOT FOUND THEN
            outcome := 'daily_cap';
            RETURN;
        END IF;
    END IF;

    IF has_pending THEN
        -- Expired, replaced because reuse is off, or its SMS can never arrive. Only if still pending: a verify
        -- or cancel that committed since the read above (this UPDATE waits for it, then looks again) has ended
        -- it already, and nothing was replaced.
        UPDATE otp_otpsession SET status = 'EXPIRED'
         WHERE id = pending.id AND created_at = pending.created_at AND status = 'PENDING';
        IF FOUND THEN
            replaced_session_id := pending.public_id;
        END IF;
    END IF;
    INSERT INTO otp_otpsession (public_id, workspace_id, sender_name_id, dest, country, src, purpose, code_digest,
                                status, attempts_used, max_attempts, created_at, expires_at, message_template,
                                app_hash, web_otp_domain, transaction, resends, resend_available_at, is_test,
                                channel, fallback_at, locale)
    VALUES (p_session_public_id, p_workspace_id, p_sender_name_id, p_dest, p_country, p_src, p_purpose,
            p_code_digest, 'PENDING', 0, p_max_attempts, p_now, p_expires_at, p_message_template,
            p_app_hash, p_web_otp_domain, p_transaction, 0, p_resend_available_at, false,
            p_channel, p_fallback_at, p_locale)
    RETURNING id INTO new_session_id;
    INSERT INTO otp_smsmessage (public_id, session_id, workspace_id, "to", country, src, status, encrypted_text,
                                encoding, segments, units, attempts, route_key, route_name, route_attempts,
                                routes_tried, provider_message_id, last_error, next_attempt_at, created_at,
                                updated_at, is_test, channel)
    VALUES (p_sms_public_id, new_session_id, p_workspace_id, p_dest, p_country, p_src, 'queued', p_encrypted_text,
            p_encoding, p_segments, p_units, 0, '', '', 0, '[]'::jsonb, '', '', p_now, p_now, p_now, false,
            p_channel)
    RETURNING id INTO sms_id;
    outcome := 'created';
    session_public_id := p_session_public_id;
    session_expires_at := p_expires_at;
    session_attempts_left := p_max_attempts;
    session_resend_available_at := p_resend_available_at;
    session_resends := 0;
END
$$;
