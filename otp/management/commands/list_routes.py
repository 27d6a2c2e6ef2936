"""`manage.py list_routes`: in `otp` because its last columns count the SMS attempts of each route."""

from datetime import timedelta
from typing import Any

from django.db.models import Count, Q
from django.utils import timezone

from otp.models import SmsAttempt
from senders.models import Route
from senders.routes import default_route
from zeckta.commands import OperatorCommand

SENT_STATUSES = ("accepted", "sent", "delivered")
FAILED_STATUSES = ("failed", "undeliverable", "rejected", "expired")


class Command(OperatorCommand):
    help = "List provider routes in the order SMS try them, with their SMS sent and failed in the last 24 h."

    def handle(self, *args: Any, **options: Any) -> None:
        since = timezone.now() - timedelta(hours=24)
        counts = {
            row["route_key"]: row
            for row in SmsAttempt.objects.filter(started_at__gte=since)
            .values("route_key")
            .annotate(
                sent=Count("pk", filter=Q(status__in=SENT_STATUSES)),
                failed=Count("pk", filter=Q(status__in=FAILED_STATUSES)),
            )
        }
        rows = [
            (
                route.name,
                route.backend,
                route.countries or "all",
                str(route.priority),
                str(route.rate_per_second or "-"),
                "yes" if route.enabled else "no",
                str(route.public_id),
            )
            for route in Route.objects.order_by("priority", "name")
        ]
        default = default_route()
        rows.append((default.name, default.backend, "all", "last", "-", "yes", default.key))
        header = ("name", "backend", "countries", "priority", "rate", "enabled", "sent_24h", "failed_24h")
        table = [header] + [
            (*row[:6], str(counts.get(row[6], {}).get("sent", 0)), str(counts.get(row[6], {}).get("failed", 0)))
            for row in rows
        ]
        widths = [max(len(line[column]) for line in table) for column in range(len(header))]
        for line in table:
            self.stdout.write("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())
