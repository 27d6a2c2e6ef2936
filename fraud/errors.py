"""Fraud-guard failures, answered by the API and the admin alike."""

# placeholder until fcore lands: fcore's module; only what the lift raises is here.

from zeckta.errors import NotFound


class FraudBlockNotFound(NotFound):  # placeholder until fcore lands
    """Missing and another workspace's block answer alike: existence is not leaked."""

    default_message = "Block not found."
