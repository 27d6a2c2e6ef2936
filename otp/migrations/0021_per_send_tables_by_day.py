"""The per-send tables by day on PostgreSQL (issue 20, docs/operations.md section 4; otp.partitions).

`otp_otpsession`, `otp_smsmessage`, `otp_wrongcode` (on `created_at`) and `otp_smsattempt` (on `started_at`)
become range-partitioned tables, one partition a UTC day, and the two database functions name the creation
time their rows may have, so that each reads the one or two partitions that can hold them.

An OFFLINE conversion of an existing deployment, in one transaction: each table is locked, renamed, a
partitioned table of the same columns, checks and defaults takes its name, the rows still within
OTP_SESSION_RETENTION_DAYS (older ones were due for the purge) are copied into daily partitions, the old
table is dropped, then the indexes are built again with their names: unique ones with the partition key
added (PostgreSQL wants it in each), the one-pending-session index once per partition. Stop the web and
worker processes first: requests would wait on the locks for the whole copy (docs/operations.md section 4).

The foreign keys INTO these tables (SMS -> session, attempt -> SMS, test inbox -> session) become
db_constraint=False first: PostgreSQL can only reference a partitioned table by its whole primary key, here
(id, created_at). Django still cascades a deleted session to its SMS in Python; nothing relied on the
database for that (Django never asks it to cascade). The keys OUT of them (to workspaces, sender names,
routes) go too: each insert would lock the workspace's row (FOR KEY SHARE), and each partition's DROP the
referenced tables (otp.partitions).

SQLite: the foreign key changes only; the tables stay plain. Not reversible on PostgreSQL.
"""

from datetime import UTC, datetime, time, timedelta

from django.conf import settings
from django.db import migrations, models

OTP_REQUEST = """
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
       AND s.created_at > p_now - interval '86400 seconds' AND s.created_at < p_now + interval '1 minute'
       FOR UPDATE OF s;
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
        -- Expired, replaced because reuse is off, or its SMS can never arrive.
        UPDATE otp_otpsession SET status = 'EXPIRED' WHERE id = pending.id AND created_at = pending.created_at;
        replaced_session_id := pending.public_id;
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
"""

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
"""

# (table, partition key, unique indexes kept once per partition: they cannot include the key)
TABLES = (
    ("otp_otpsession", "created_at", ("otp_otpsession_one_pending_per_destination",)),
    ("otp_smsmessage", "created_at", ()),
    ("otp_smsattempt", "started_at", ()),
    ("otp_wrongcode", "created_at", ()),
)


def _indexes(cursor, table):
    """(name, definition, unique, primary, constraint kind, partial, columns) of each index of `table`."""
    cursor.execute(
        """
        SELECT i.relname, pg_get_indexdef(x.indexrelid), x.indisunique, x.indisprimary, con.contype,
               x.indpred IS NOT NULL,
               (SELECT array_agg(a.attname ORDER BY k.n) FROM unnest(x.indkey) WITH ORDINALITY k(attnum, n)
                  JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum)
          FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
          LEFT JOIN pg_constraint con ON con.conindid = x.indexrelid AND con.conrelid = x.indrelid
         WHERE x.indrelid = %s::regclass
        """,
        [table],
    )
    return cursor.fetchall()


def _midnight(day):
    return datetime.combine(day, time(), tzinfo=UTC)


def _convert(cursor, table, key, local_unique, first_day, last_day):
    cursor.execute("SELECT relkind FROM pg_class WHERE relname = %s", [table])
    if cursor.fetchone()[0] == "p":
        return
    cursor.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
    indexes = _indexes(cursor, table)
    cursor.execute(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'f'",
        [table],
    )
    foreign_keys = cursor.fetchall()
    cursor.execute(f"SELECT coalesce(max(id), 0) FROM {table}")
    (max_id,) = cursor.fetchone()
    cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [table])
    (sequence,) = cursor.fetchone()
    if sequence:
        cursor.execute(f"SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END FROM {sequence}")
        max_id = max(max_id, cursor.fetchone()[0])

    old = f"{table}_unpartitioned"
    cursor.execute(f"ALTER TABLE {table} RENAME TO {old}")
    cursor.execute(
        f"CREATE TABLE {table} (LIKE {old} INCLUDING DEFAULTS INCLUDING CONSTRAINTS) PARTITION BY RANGE ({key})"
    )
    day = first_day
    while day <= last_day:
        name = f"{table}_p{day:%Y%m%d}"
        cursor.execute(
            f"CREATE TABLE {name} PARTITION OF {table} FOR VALUES FROM (%s) TO (%s)",
            [_midnight(day).isoformat(), _midnight(day + timedelta(days=1)).isoformat()],
        )
        day += timedelta(days=1)
    # Older rows were past their retention: the purge would have deleted them.
    cursor.execute(f"INSERT INTO {table} SELECT * FROM {old} WHERE {key} >= %s", [_midnight(first_day).isoformat()])
    cursor.execute(f"DROP TABLE {old}")  # with its identity sequence and indexes: their names are free again

    cursor.execute(f"CREATE SEQUENCE {table}_id_seq OWNED BY {table}.id")
    cursor.execute(f"SELECT setval('{table}_id_seq', %s, true)", [max(max_id, 1)])
    cursor.execute(f"ALTER TABLE {table} ALTER COLUMN id SET DEFAULT nextval('{table}_id_seq')")
    for name, definition, unique, primary, kind, _partial, columns in indexes:
        keyed = ", ".join([*columns, key] if key not in columns else columns)
        if primary:
            cursor.execute(f"ALTER TABLE {table} ADD CONSTRAINT {name} PRIMARY KEY ({keyed})")
        elif kind == "u":
            cursor.execute(f"ALTER TABLE {table} ADD CONSTRAINT {name} UNIQUE ({keyed})")
        elif unique and name in local_unique:
            continue  # once per partition, below (otp.partitions)
        else:
            assert not unique or key in columns, f"{name}: a unique index of {table} without {key}"
            cursor.execute(definition)
    for name, definition in foreign_keys:
        cursor.execute(f"ALTER TABLE {table} ADD CONSTRAINT {name} {definition}")
    # What otp.partitions does for each new partition.
    for name, definition, *_ in indexes:
        if name in local_unique:
            columns_and_predicate = definition[definition.index(" USING btree ") + len(" USING btree ") :]
            day = first_day
            while day <= last_day:
                partition = f"{table}_p{day:%Y%m%d}"
                cursor.execute(f"CREATE UNIQUE INDEX {partition}_u0 ON {partition} {columns_and_predicate}")
                day += timedelta(days=1)
    cursor.execute(f"ANALYZE {table}")


def partition(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    if not settings.OTP_PARTITION_BY_DAY:
        # Plain tables (the default, docs/operations.md section 4): the functions with their bounds only.
        with schema_editor.connection.cursor() as cursor:
            for name, text in (("otp_request", OTP_REQUEST), ("otp_verify", OTP_VERIFY)):
                cursor.execute(f"DROP FUNCTION IF EXISTS {name}")
                cursor.execute(text)
        return
    today = datetime.now(UTC).date()
    # From the oldest day still within retention (and the day before it, which the purge drops next) to
    # the days beat would have created ahead.
    first_day = today - timedelta(days=settings.OTP_SESSION_RETENTION_DAYS + 1)
    last_day = today + timedelta(days=settings.OTP_PARTITIONS_AHEAD_DAYS)
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SET LOCAL statement_timeout = 0")
        for table, key, local_unique in TABLES:
            _convert(cursor, table, key, local_unique, first_day, last_day)
        # Their plans name the tables by oid: replace them (and with the pruning versions).
        cursor.execute("DROP FUNCTION IF EXISTS otp_request")
        cursor.execute(OTP_REQUEST)
        cursor.execute("DROP FUNCTION IF EXISTS otp_verify")
        cursor.execute(OTP_VERIFY)


class Migration(migrations.Migration):
    atomic = True

    dependencies = [("otp", "0020_channel_fallback")]

    operations = [
        migrations.AlterField(
            model_name="smsmessage",
            name="session",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                null=True,
                on_delete=models.deletion.CASCADE,
                related_name="sms_messages",
                to="otp.otpsession",
            ),
        ),
        migrations.AlterField(
            model_name="smsattempt",
            name="message",
            field=models.ForeignKey(
                db_constraint=False,
                on_delete=models.deletion.CASCADE,
                related_name="attempt_log",
                to="otp.smsmessage",
            ),
        ),
        migrations.AlterField(
            model_name="testinboxmessage",
            name="session",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                null=True,
                on_delete=models.deletion.CASCADE,
                related_name="+",
                to="otp.otpsession",
            ),
        ),
        # Nor any key out of them (otp.partitions says why).
        migrations.AlterField(
            model_name="otpsession",
            name="sender_name",
            field=models.ForeignKey(
                db_constraint=False,
                on_delete=models.deletion.PROTECT,
                related_name="otp_sessions",
                to="senders.sendername",
            ),
        ),
        migrations.AlterField(
            model_name="otpsession",
            name="workspace",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=models.deletion.CASCADE,
                related_name="otp_sessions",
                to="workspaces.workspace",
            ),
        ),
        migrations.AlterField(
            model_name="smsattempt",
            name="route",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                null=True,
                on_delete=models.deletion.SET_NULL,
                related_name="+",
                to="senders.route",
            ),
        ),
        migrations.AlterField(
            model_name="smsmessage",
            name="workspace",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=models.deletion.CASCADE,
                related_name="sms_messages",
                to="workspaces.workspace",
            ),
        ),
        migrations.AlterField(
            model_name="wrongcode",
            name="workspace",
            field=models.ForeignKey(
                db_constraint=False, on_delete=models.deletion.CASCADE, related_name="+", to="workspaces.workspace"
            ),
        ),
        migrations.RunPython(partition, elidable=False),
    ]
