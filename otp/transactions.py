"""A TRANSACTION request's amount and payee: shown in the SMS and bound to the code (PSD2 dynamic linking).

The code's HMAC covers the canonical form below, so a code issued for one amount to one payee can never
approve another: a verify that names a different transaction computes a different digest (INVALID).
"""

import json
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Any


@dataclass(frozen=True)
class Transaction:
    amount: str  # a positive decimal with exactly two places: "125.50"
    currency: str  # an ISO 4217 alphabetic code, upper case: "GHS"
    payee: str  # 1 to 40 printable characters, as sent

    @classmethod
    def normalised(cls, *, amount: str, currency: str, payee: str) -> "Transaction":
        """ "125.5" and "125.50" are one amount, "ghs" and "GHS" one currency: both sides of a verify agree."""
        return cls(amount=f"{Decimal(amount):.2f}", currency=currency.upper(), payee=payee)

    @classmethod
    def from_stored(cls, value: dict[str, Any] | None) -> "Transaction | None":
        return cls(**value) if value else None

    def as_dict(self) -> dict[str, str]:
        return asdict(self)

    @property
    def display_amount(self) -> str:
        """What <AMOUNT> renders: "GHS 125.50"."""
        return f"{self.currency} {self.amount}"

    def canonical(self) -> str:
        """The bytes the code's HMAC covers: fixed key order, no spaces, the payee as sent."""
        return json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
