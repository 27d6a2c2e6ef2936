"""The shared shape of operator commands: the result on the last stdout line, errors on one stderr line."""

from argparse import ArgumentTypeError
from collections.abc import Callable
from typing import Any, NoReturn

from django.core.management.base import BaseCommand, CommandError, CommandParser

from zeckta.errors import ApplicationError


def bounded_int(low: int, high: int) -> Callable[[str], int]:
    """An argparse `type`: a whole number from `low` to `high`, or a one-line error that names the bounds."""

    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            number = None
        if number is None or not low <= number <= high:
            raise ArgumentTypeError(f"must be a whole number between {low} and {high}, not {value!r}")
        return number

    return parse


class OneLineCommandParser(CommandParser):
    """Argument mistakes print one `CommandError: ...` line and exit 2, not argparse's usage block."""

    def error(self, message: str) -> NoReturn:
        if self.called_from_command_line:
            self.exit(2, f"CommandError: {message} (see {self.prog} --help)\n")
        raise CommandError(f"Error: {message}")


class OperatorCommand(BaseCommand):
    # Operators read the result, scripts parse the last line: keep the output free of system-check noise.
    requires_system_checks: list[str] = []

    def create_parser(self, prog_name: str, subcommand: str, **kwargs) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        # BaseCommand builds a plain CommandParser; this subclass only changes how errors are printed.
        parser.__class__ = OneLineCommandParser
        return parser

    def execute(self, *args: Any, **options: Any) -> str | None:
        # The services' errors are the API's errors: here each is its message on one line.
        try:
            return super().execute(*args, **options)
        except ApplicationError as exc:
            raise self.fail(exc.message) from None

    def fail(self, error: Exception | str) -> CommandError:
        """A CommandError whose message is one line whatever the service said."""
        return CommandError(" ".join(str(error).split()))

    def result(self, value: object) -> None:
        """Writes the command's result: always the last line of standard output."""
        self.stdout.write(str(value))
