from argparse import ArgumentParser

from senders.models import SenderName
from senders.services import sender_name_create
from workspaces.selectors import workspace_get_by_slug
from zeckta.commands import OperatorCommand


class Command(OperatorCommand):
    help = "Register a sender name for a workspace (PENDING unless --approve) and print its senderNameId."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("sender")
        # Not argparse `choices`: the service owns the list and says what is wrong in one line.
        parser.add_argument(
            "--type",
            default=SenderName.Type.ALPHANUMERIC,
            dest="sender_type",
            help="alphanumeric, msisdn or shortcode.",
        )
        parser.add_argument("--approve", action="store_true", help="Approve it at once.")

    def handle(self, *args, **options) -> None:
        workspace = workspace_get_by_slug(options["slug"])
        sender_name = sender_name_create(
            workspace=workspace,
            name=options["sender"],
            sender_type=options["sender_type"],
            approve=options["approve"],
            actor="command:add_sender",
        )
        self.stdout.write(f"Sender {sender_name.name!r} for {workspace.slug}: {sender_name.status}.")
        self.result(sender_name.public_id)
