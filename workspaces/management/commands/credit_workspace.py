from argparse import ArgumentParser

from workspaces.billing import CREDIT_UNITS_MAX, balance_credit
from workspaces.selectors import workspace_get_by_slug
from zeckta.commands import OperatorCommand, bounded_int


class Command(OperatorCommand):
    help = "Add units to a prepaid workspace's balance and print the new balance."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("units", type=bounded_int(1, CREDIT_UNITS_MAX))

    def handle(self, *args, **options) -> None:
        units = options["units"]
        workspace = workspace_get_by_slug(options["slug"])
        # A postpaid workspace is never refused and never debited: a credit would be a number nobody reads.
        if not workspace.is_prepaid:
            raise self.fail(f"workspace {workspace.slug!r} is postpaid: it has no balance to credit")
        balance = balance_credit(workspace=workspace, units=units, actor="command:credit_workspace")
        self.result(balance)
