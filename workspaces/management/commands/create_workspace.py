from argparse import ArgumentParser

from workspaces.services import workspace_create
from zeckta.commands import OperatorCommand


class Command(OperatorCommand):
    help = "Create a workspace (a tenant) and print its slug."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--slug", help="Default: made from the name.")
        parser.add_argument(
            "--no-otp-reuse", action="store_true", help="Send a new OTP on every request instead of reusing one."
        )
        parser.add_argument("--otp-validity", type=int, metavar="SECONDS", help="10 to 86400.")
        parser.add_argument("--otp-attempts", type=int, metavar="N", help="Verify attempts per code, 1 to 10.")
        parser.add_argument("--otp-length", type=int, metavar="N", help="Digits per code, 4 to 10.")
        parser.add_argument(
            "--prepaid", type=int, metavar="UNITS", help="Make the workspace prepaid with this opening balance."
        )
        parser.add_argument("--countries", metavar="GH,NG", help="Allowed destination countries (ISO alpha-2).")

    def handle(self, *args, **options) -> None:
        workspace = workspace_create(
            name=options["name"],
            slug=options["slug"],
            otp_reuse_enabled=not options["no_otp_reuse"],
            otp_validity_seconds=options["otp_validity"],
            otp_max_attempts=options["otp_attempts"],
            otp_code_length=options["otp_length"],
            prepaid_units=options["prepaid"],
            countries=options["countries"],
            actor="command:create_workspace",
        )
        billing = f"prepaid, balance {workspace.balance_units}" if workspace.is_prepaid else "postpaid"
        self.stdout.write(f"Created workspace {workspace.name!r} ({billing}).")
        self.result(workspace.slug)
