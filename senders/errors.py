"""Sender-name failures, answered by the API (section 5's codes) and the operator commands alike."""

from zeckta.errors import Conflict, NotFound


class SenderNameNotFound(NotFound):
    """Missing and another workspace's sender name answer alike: existence is not leaked."""

    default_message = "Sender name not found."


class SenderNameExists(Conflict):
    code = "SENDER_NAME_EXISTS"
    default_message = "This workspace already has this sender name."

    def __init__(self, name: str) -> None:
        message = f"This workspace already has the sender name {name!r}."
        super().__init__(message, errors={"sender": [message]})


class SenderNameNotEditable(Conflict):
    code = "SENDER_NAME_NOT_EDITABLE"
    default_message = "Only a PENDING or REJECTED sender name can be changed."


class RouteNotFound(NotFound):
    default_message = "Route not found."


class RouteExists(Conflict):
    code = "ROUTE_EXISTS"
    default_message = "A route with this name already exists."
