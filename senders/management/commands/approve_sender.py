from argparse import ArgumentParser

from senders.services import SenderError, sender_approve, sender_get
from workspaces.management.base import OperatorCommand


class Command(OperatorCommand):
    help = "Approve a sender name by its senderNameId and print the new status."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("sender_name_id")

    def handle(self, *args, **options) -> None:
        try:
            sender_name = sender_approve(
                sender_name=sender_get(public_id=options["sender_name_id"]), actor="command:approve_sender"
            )
        except SenderError as exc:
            raise self.fail(exc)
        self.result(sender_name.status)
