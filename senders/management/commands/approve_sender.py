from argparse import ArgumentParser

from senders.selectors import sender_name_get_by_id
from senders.services import sender_name_approve
from zeckta.commands import OperatorCommand


class Command(OperatorCommand):
    help = "Approve a sender name by its senderNameId and print the new status."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("sender_name_id")

    def handle(self, *args, **options) -> None:
        sender_name = sender_name_approve(
            sender_name=sender_name_get_by_id(options["sender_name_id"]), actor="command:approve_sender"
        )
        self.result(sender_name.status)
