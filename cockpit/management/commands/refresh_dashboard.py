"""`manage.py refresh_dashboard`: rebuild the dashboard's rollup now rather than at beat's next minute (after a
deploy, or to see a change at once). With --days, rebuild that many days back (after changing a rule)."""

from argparse import ArgumentParser
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from cockpit.services import traffic_rollup_refresh
from zeckta.commands import OperatorCommand, bounded_int


class Command(OperatorCommand):
    help = "Rebuild the dashboard's hourly traffic rollup and its suspected-pumping list now."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--days",
            type=bounded_int(1, settings.OTP_SESSION_RETENTION_DAYS),
            help="Rebuild this many days back, at most the sessions' retention (default: the hours that may "
            "still change, or the whole backfill on a first run).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        days = options["days"]
        result = traffic_rollup_refresh(rebuild_from=timezone.now() - timedelta(days=days) if days else None)
        self.result(
            f"rebuilt {result.hours} hours from {result.rebuilt_from:%Y-%m-%dT%H:%MZ}: {result.rows} rows, "
            f"{result.suspects} suspects, {result.took_ms} ms"
        )
