from argparse import ArgumentParser, ArgumentTypeError
from typing import Any

from senders.models import Route
from senders.routes import route_create
from zeckta.commands import OperatorCommand, bounded_int

PRIORITY_MAX = 1_000_000
RATE_MAX = 100_000  # SMS per second


def setting(value: str) -> tuple[str, str]:
    name, separator, setting_value = value.partition("=")
    if not separator or not name.strip():
        raise ArgumentTypeError(f"expected KEY=VALUE, not {value!r}")
    return name.strip(), setting_value


class Command(OperatorCommand):
    help = (
        "Add a provider route and print its routeId. Settings (credentials) are stored encrypted and never "
        "shown again; the receipt URL to give the provider is PUBLIC_URL/v1/webhooks/sms/<routeId>."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--backend", required=True, help=", ".join(Route.Backend.values))
        parser.add_argument("--countries", default="", metavar="GH,NG", help="Countries it serves. Default: all.")
        parser.add_argument(
            "--priority",
            type=bounded_int(0, PRIORITY_MAX),
            default=100,
            metavar="N",
            help="Lower goes first (default 100).",
        )
        parser.add_argument(
            "--rate",
            type=bounded_int(1, RATE_MAX),
            metavar="MSG_PER_S",
            help="Most SMS per second through it, across all workers. Default: no cap.",
        )
        parser.add_argument(
            "--setting",
            type=setting,
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="A backend setting; repeat once per setting.",
        )
        parser.add_argument("--disabled", action="store_true", help="Add it switched off.")

    def handle(self, *args: Any, **options: Any) -> None:
        route = route_create(
            name=options["name"],
            backend=options["backend"],
            values=dict(options["setting"]),
            countries=options["countries"],
            priority=options["priority"],
            rate_per_second=options["rate"],
            enabled=not options["disabled"],
            actor="command:add_route",
        )
        self.stdout.write(f"Route {route.name!r} ({route.backend}, priority {route.priority}) added.")
        self.result(route.public_id)
