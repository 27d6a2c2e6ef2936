from argparse import ArgumentParser

from workspaces.management.base import OperatorCommand
from workspaces.services import WorkspaceError, api_key_revoke


class Command(OperatorCommand):
    help = "Revoke an API key by its prefix (as list_api_keys shows it). Revoking twice is harmless."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("prefix")

    def handle(self, *args, **options) -> None:
        try:
            api_key = api_key_revoke(prefix=options["prefix"], actor="command:revoke_api_key")
        except WorkspaceError as exc:
            raise self.fail(exc)
        self.result(f"revoked {api_key.prefix}")
