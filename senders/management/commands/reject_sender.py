from argparse import ArgumentParser

from senders.selectors import sender_name_get_by_id
from senders.services import sender_name_reject
from zeckta.commands import OperatorCommand


class Command(OperatorCommand):
    help = "Reject a sender name by its senderNameId, with a reason, and print the new status."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("sender_name_id")
        parser.add_argument("--reason", required=True, help="Why: kept on the sender name.")

    def handle(self, *args, **options) -> None:
        sender_name = sender_name_reject(
            sender_name=sender_name_get_by_id(options["sender_name_id"]),
            reason=options["reason"],
            actor="command:reject_sender",
        )
        self.result(sender_name.status)
