from argparse import ArgumentParser

from senders.services import SenderError, sender_get, sender_reject
from workspaces.management.base import OperatorCommand


class Command(OperatorCommand):
    help = "Reject a sender name by its senderNameId, with a reason, and print the new status."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("sender_name_id")
        parser.add_argument("--reason", required=True, help="Why: kept on the sender name.")

    def handle(self, *args, **options) -> None:
        try:
            sender_name = sender_reject(sender_name=sender_get(public_id=options["sender_name_id"]),
                                        reason=options["reason"], actor="command:reject_sender")
        except SenderError as exc:
            raise self.fail(exc)
        self.result(sender_name.status)
