"""Receipts from providers that sign nothing (Infobip, Africa's Talking, the `http` backend) carry the
route's `receipt_token`, as `Authorization: Bearer <token>` or as `?token=<token>` in the receipt URL."""

import hmac
from collections.abc import Mapping
from typing import Any

from senders.gateways.base import ReceiptRejected, ReceiptRequest


def check_receipt_token(config: Mapping[str, Any], request: ReceiptRequest) -> None:
    expected = str(config.get("receipt_token") or "")
    bearer = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    given = bearer or request.query.get("token", "")
    if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
        raise ReceiptRejected("missing or wrong receipt token")
