"""`check --deploy` and the SMS routes (API.md section 7): a development backend as the only route is an error;
behind provider routes configured in the admin, a warning (it still catches what they do not serve)."""

import pytest

from senders.routes import route_create
from zeckta.checks import check_production_settings

pytestmark = pytest.mark.django_db


@pytest.fixture
def console_default(settings) -> None:
    settings.DEBUG = False
    settings.SMS_BACKEND = "console"


def route_messages(databases: list[str] | None) -> list[tuple[str, str]]:
    return [
        (type(message).__name__, message.id)
        for message in check_production_settings(None, databases=databases)
        if message.id in ("zeckta.E005", "zeckta.W002")
    ]


def twilio_route(**fields) -> None:
    route_create(name="twilio", backend="twilio", values={"account_sid": "AC1", "auth_token": "t"}, **fields)


def test_with_no_route_a_development_backend_is_an_error(console_default):
    assert route_messages(["default"]) == [("Error", "zeckta.E005")]


def test_behind_a_provider_route_it_is_a_warning(console_default):
    twilio_route()
    assert route_messages(["default"]) == [("Warning", "zeckta.W002")]


def test_routes_are_counted_only_when_the_check_may_read_the_database(console_default):
    twilio_route()
    assert route_messages(None) == [("Error", "zeckta.E005")]


@pytest.mark.parametrize(
    "route",
    [
        {"name": "off", "backend": "twilio", "values": {"account_sid": "AC1", "auth_token": "t"}, "enabled": False},
        {"name": "printer", "backend": "console", "values": {}},
    ],
)
def test_a_disabled_or_development_route_does_not_count(console_default, route):
    route_create(**route)
    assert route_messages(["default"]) == [("Error", "zeckta.E005")]


def test_a_real_default_backend_needs_no_route(settings):
    settings.DEBUG, settings.SMS_BACKEND = False, "http"
    assert route_messages(["default"]) == []
