from argparse import ArgumentParser

from workspaces.billing import CREDIT_UNITS_MAX
from workspaces.models import (
    DAILY_SMS_CAP_MAX,
    OTP_ATTEMPTS_MAX,
    OTP_ATTEMPTS_MIN,
    OTP_CODE_LENGTH_MAX,
    OTP_CODE_LENGTH_MIN,
    OTP_VALIDITY_SECONDS_MAX,
    OTP_VALIDITY_SECONDS_MIN,
    FraudGuardMode,
)
from workspaces.services import workspace_create
from zeckta.channels import FALLBACK_AFTER_SECONDS_MAX, FALLBACK_AFTER_SECONDS_MIN
from zeckta.commands import OperatorCommand, bounded_int


class Command(OperatorCommand):
    help = "Create a workspace (a tenant) and print its slug."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--slug", help="Default: made from the name.")
        parser.add_argument(
            "--no-otp-reuse", action="store_true", help="Send a new OTP on every request instead of reusing one."
        )
        parser.add_argument(
            "--otp-validity",
            type=bounded_int(OTP_VALIDITY_SECONDS_MIN, OTP_VALIDITY_SECONDS_MAX),
            metavar="SECONDS",
            help=f"{OTP_VALIDITY_SECONDS_MIN} to {OTP_VALIDITY_SECONDS_MAX}.",
        )
        parser.add_argument(
            "--otp-attempts",
            type=bounded_int(OTP_ATTEMPTS_MIN, OTP_ATTEMPTS_MAX),
            metavar="N",
            help=f"Verify attempts per code, {OTP_ATTEMPTS_MIN} to {OTP_ATTEMPTS_MAX}.",
        )
        parser.add_argument(
            "--otp-length",
            type=bounded_int(OTP_CODE_LENGTH_MIN, OTP_CODE_LENGTH_MAX),
            metavar="N",
            help=f"Digits per code, {OTP_CODE_LENGTH_MIN} to {OTP_CODE_LENGTH_MAX}.",
        )
        parser.add_argument(
            "--prepaid",
            type=bounded_int(0, CREDIT_UNITS_MAX),
            metavar="UNITS",
            help="Make the workspace prepaid with this opening balance.",
        )
        parser.add_argument("--countries", metavar="GH,NG", help="Allowed destination countries (ISO alpha-2).")
        parser.add_argument(
            "--daily-sms-cap",
            type=bounded_int(0, DAILY_SMS_CAP_MAX),
            metavar="N",
            help=f"New OTP SMS per UTC day for the whole workspace, 0 to {DAILY_SMS_CAP_MAX} (0: no cap).",
        )
        parser.add_argument(
            "--fraud-guard",
            choices=FraudGuardMode.values,
            help="enforce (the default) blocks and refuses; shadow records every decision and refuses nothing; "
            "off does neither.",
        )
        parser.add_argument(
            "--relay", action="store_true", help="Enable the SMS relay (POST /v1/messaging/sms, API.md section 14)."
        )
        parser.add_argument(
            "--channels",
            metavar="sms,whatsapp,voice",
            help="The fallback order (API.md section 15), each channel once; default: sms.",
        )
        parser.add_argument(
            "--fallback-after",
            type=bounded_int(FALLBACK_AFTER_SECONDS_MIN, FALLBACK_AFTER_SECONDS_MAX),
            metavar="SECONDS",
            help=f"Seconds without a delivery report before the next channel, {FALLBACK_AFTER_SECONDS_MIN} to "
            f"{FALLBACK_AFTER_SECONDS_MAX} (default 30).",
        )
        parser.add_argument(
            "--locale",
            metavar="TAG",
            help="The language of the texts when a request names none (a BCP 47 tag: fr, pt-BR). Default: en.",
        )

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
            daily_sms_cap=options["daily_sms_cap"],
            fraud_guard_mode=options["fraud_guard"],
            relay_enabled=options["relay"],
            channels=options["channels"],
            fallback_after_seconds=options["fallback_after"],
            locale=options["locale"],
            actor="command:create_workspace",
        )
        billing = f"prepaid, balance {workspace.balance_units}" if workspace.is_prepaid else "postpaid"
        cap = f"{workspace.daily_sms_cap} SMS a day" if workspace.daily_sms_cap else "no daily SMS cap"
        self.stdout.write(
            f"Created workspace {workspace.name!r} ({billing}, {cap}, fraud guard {workspace.fraud_guard_mode})."
        )
        self.result(workspace.slug)
