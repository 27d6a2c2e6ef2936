from argparse import ArgumentParser

from workspaces.selectors import workspace_get_by_slug
from zeckta.commands import OperatorCommand


class Command(OperatorCommand):
    help = (
        "Print a workspace's Twilio Verify ids: the account id (the username of HTTP Basic) and the service id "
        "(in the /v2/Services/... URLs), as `AC... VA...`."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("slug")

    def handle(self, *args, **options) -> None:
        workspace = workspace_get_by_slug(options["slug"])
        self.result(f"{workspace.account_sid} {workspace.service_sid}")
