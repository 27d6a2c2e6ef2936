"""`manage.py smpp_bind ROUTE`: holds an smpp route's bind (one process per route, kept alive by the
process supervisor). In `otp` because the delivery receipts that arrive on the bind are applied here."""

import signal
from argparse import ArgumentParser
from typing import Any

from otp.receipts import receipts_apply
from senders.errors import RouteNotFound
from senders.gateways import Receipt
from senders.models import Route
from senders.routes import route_settings
from senders.smpp_bind import SmppBind
from zeckta.commands import OperatorCommand
from zeckta.errors import ValidationFailed


class Command(OperatorCommand):
    help = "Hold the SMPP bind of one route (its name or routeId): submit its SMS, receive its receipts."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("route", help="The route's name or routeId.")

    def handle(self, *args: Any, **options: Any) -> None:
        route = Route.objects.filter(name=options["route"]).first()
        if route is None:
            route = Route.objects.filter(public_id=options["route"]).first() if len(options["route"]) == 36 else None
        if route is None:
            raise RouteNotFound(f"no route named {options['route']!r}")
        if route.backend != Route.Backend.SMPP:
            raise ValidationFailed(f"route {route.name!r} is {route.backend}, not smpp")
        key = str(route.public_id)

        def apply(receipts: list[Receipt]) -> None:
            receipts_apply(route_key=key, receipts=receipts)

        bind = SmppBind(route_key=key, route_name=route.name, config=route_settings(route), on_receipts=apply)
        # SIGTERM from the supervisor: finish the PDU at hand, answer what is pending, unbind.
        signal.signal(signal.SIGTERM, lambda *_: bind.stop())
        self.stdout.write(f"Holding the SMPP bind of route {route.name!r} (Ctrl-C or SIGTERM to stop).")
        try:
            bind.run()
        except KeyboardInterrupt:
            bind.stop()
        self.result(f"stopped {route.name}")
