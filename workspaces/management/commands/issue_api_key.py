from argparse import ArgumentParser

from django.conf import settings

from workspaces.keys import EXPIRES_IN_DAYS_MAX
from workspaces.selectors import workspace_get_by_slug
from workspaces.services import api_key_issue
from zeckta.commands import OperatorCommand, bounded_int


class Command(OperatorCommand):
    help = "Issue an API key for a workspace and print it. The key is shown this once: only its digest is kept."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("--name", default="", metavar="LABEL")
        parser.add_argument(
            "--tps",
            type=bounded_int(1, settings.API_KEY_MAX_TPS),
            metavar="N",
            help=f"Requests per second (default {settings.API_KEY_DEFAULT_TPS}).",
        )
        parser.add_argument(
            "--expires-in-days", type=bounded_int(1, EXPIRES_IN_DAYS_MAX), metavar="N", help="Default: never expires."
        )
        parser.add_argument(
            "--test",
            action="store_true",
            help="A zk_test_ key: the same API, but no SMS is sent (each goes to the workspace's "
            "test inbox) and nothing is charged.",
        )

    def handle(self, *args, **options) -> None:
        workspace = workspace_get_by_slug(options["slug"])
        issued = api_key_issue(
            workspace=workspace,
            name=options["name"],
            tps=options["tps"],
            expires_in_days=options["expires_in_days"],
            test=options["test"],
            actor="command:issue_api_key",
        )
        key = issued.api_key
        expiry = f"expires {key.expires_at:%Y-%m-%d %H:%M} UTC" if key.expires_at else "never expires"
        mode = "Test API key" if key.is_test else "API key"
        self.stdout.write(f"{mode} {key.prefix} for {workspace.slug} ({key.tps} tps, {expiry}).")
        if key.is_test:
            self.stdout.write(
                "Test mode: no SMS is sent and nothing is charged; read the texts from GET "
                "/v1/messaging/test-inbox?dest=..."
            )
        self.stdout.write("Store it now: it is shown this once and cannot be recovered.")
        self.result(issued.raw_key)
