from argparse import ArgumentParser

from workspaces.services import api_key_revoke
from zeckta.commands import OperatorCommand


class Command(OperatorCommand):
    help = "Revoke an API key by its prefix (as list_api_keys shows it). Revoking twice is harmless."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("prefix")

    def handle(self, *args, **options) -> None:
        api_key = api_key_revoke(prefix=options["prefix"], actor="command:revoke_api_key")
        self.result(f"revoked {api_key.prefix}")
