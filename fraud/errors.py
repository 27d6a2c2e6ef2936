"""Fraud guard failures (API.md section 13): the refusal a client sees, and a block that is not this workspace's."""

from collections.abc import Iterable
from typing import TYPE_CHECKING

from zeckta.errors import ApplicationError, NotFound

if TYPE_CHECKING:
    from fraud.guard import Trip


class DestinationBlocked(ApplicationError):
    """A request or resend for a number whose range or country the guard blocks, in `enforce`.

    The answer names no rule and no end time: an attacker learns nothing to tune the next attempt by.
    `trips` are the blocks this very request decided (the 11th number of a range): a caller whose
    transaction rolls back with the refusal records them again after it (otp.idempotency).
    """

    status_code = 403
    code = "DESTINATION_BLOCKED"
    default_message = "The service cannot send a code to this number now."

    def __init__(self, *, trips: "Iterable[Trip]" = ()) -> None:
        super().__init__()
        self.trips: tuple[Trip, ...] = tuple(trips)


class FraudBlockNotFound(NotFound):
    default_message = "Fraud block not found."
