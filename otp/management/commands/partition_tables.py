"""`manage.py partition_tables`: the per-send tables by day, for a database migrated with them plain.

Migration otp 0021 converts the tables only when OTP_PARTITION_BY_DAY is on as it runs; a deployment that
migrated with it off keeps plain tables, and a migration never runs twice. This runs the same conversion
(0021's own code: one home for it) at a time the operator chooses, OFFLINE as the migration is: stop the web
processes, the workers and beat first (docs/operations.md, section 4).
"""

from argparse import ArgumentParser
from datetime import UTC, datetime, timedelta
from importlib import import_module
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import OperationalError, connection, transaction

from otp.day_functions import day_functions_sync
from otp.partitions import partitioned

CONVERSION = import_module("otp.migrations.0021_per_send_tables_by_day")
# The functions as the newest otp migration installs them (otp.tests.test_sql_functions holds the two equal).
SQL_DIR = Path(__file__).resolve().parents[2] / "sql"


class Command(BaseCommand):
    help = (
        "Range-partition otp_otpsession, otp_smsmessage, otp_smsattempt and otp_wrongcode by UTC day on a "
        "PostgreSQL database whose migrations ran with OTP_PARTITION_BY_DAY off, keeping the rows within "
        "OTP_SESSION_RETENTION_DAYS. Offline: stop the web processes, workers and beat first. Not reversible."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--lock-timeout",
            default="10s",
            help="How long to wait for each table's lock before giving up (a process still running); "
            "PostgreSQL interval syntax.",
        )

    def handle(self, *args, **options) -> None:
        if connection.vendor != "postgresql":
            raise CommandError(f"Daily partitions are PostgreSQL's: {connection.vendor} keeps plain tables.")
        if partitioned():
            self.stdout.write("The per-send tables are already partitioned by day: nothing to do.")
            return
        today = datetime.now(UTC).date()
        # As migration 0021: from the day before the oldest kept (the purge drops it next) to beat's days ahead.
        first_day = today - timedelta(days=settings.OTP_SESSION_RETENTION_DAYS + 1)
        last_day = today + timedelta(days=settings.OTP_PARTITIONS_AHEAD_DAYS)
        try:
            # One transaction: a failure anywhere leaves the plain tables as they were.
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("SET LOCAL statement_timeout = 0")  # the copy takes about a minute per million OTP
                cursor.execute("SELECT set_config('lock_timeout', %s, true)", [options["lock_timeout"]])
                for table, key, local_unique in CONVERSION.TABLES:
                    self.stdout.write(f"{table}: partitioning by {key}, {first_day} to {last_day}")
                    CONVERSION._convert(cursor, table, key, local_unique, first_day, last_day)
                # Their plans named the old tables: replaced, as the migration does.
                for path in sorted(SQL_DIR.glob("*.sql")):
                    cursor.execute(f"DROP FUNCTION IF EXISTS {path.stem}")
                    cursor.execute(path.read_text())
        except OperationalError as exc:  # the lock time-out
            raise CommandError(
                f"Nothing changed: {exc}. Another process still uses the tables: stop web, the workers and beat."
            ) from exc
        made, _ = day_functions_sync()  # what the hot paths call for each day (otp.day_functions)
        self.stdout.write(f"{made} day functions made")
        self.stdout.write(self.style.SUCCESS("Done: the per-send tables are partitioned by day."))
