from argparse import ArgumentParser
from datetime import datetime

from workspaces.selectors import workspace_get_by_slug
from zeckta.commands import OperatorCommand

COLUMNS = ("prefix", "name", "tps", "created", "last used", "revoked")


def _when(value: datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M}" if value else "-"


class Command(OperatorCommand):
    help = (
        "List a workspace's API keys (prefixes only: the keys themselves are not stored). A test key's "
        "prefix starts zk_test_."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("slug")

    def handle(self, *args, **options) -> None:
        workspace = workspace_get_by_slug(options["slug"])
        rows = [COLUMNS] + [
            (
                key.prefix,
                key.name or "-",
                str(key.tps),
                _when(key.created_at),
                _when(key.last_used_at),
                _when(key.revoked_at),
            )
            for key in workspace.api_keys.order_by("created_at", "id")
        ]
        widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
        for row in rows:
            self.stdout.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
