"""Schemathesis against the live WSGI app and its own OpenAPI document, on PostgreSQL.

Every operation is called with schema-valid and schema-violating data, with and without the key;
every check is on (no 5xx, responses match the schema, invalid data is refused, auth is not ignored).
`make test` runs a bounded, deterministic pass; `make fuzz` sets FUZZ_MAX_EXAMPLES higher.
"""

import os

import pytest
import schemathesis
from django.core import signals
from django.db import close_old_connections
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from senders.tests.factories import SenderNameFactory
from workspaces.tests.factories import WorkspaceFactory, issue_key
from zeckta.wsgi import application

schema = schemathesis.openapi.from_wsgi("/openapi.json", application)
schema.config.generation.update(
    max_examples=int(os.environ.get("FUZZ_MAX_EXAMPLES", "20")),
    deterministic=os.environ.get("FUZZ_RANDOM", "") == "",
)


@pytest.fixture
def keep_test_connection():
    """Requests go through the real WSGI handler, whose signals close "old" connections: that would
    close the test's transaction. Django's own test client unhooks them the same way."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


# Served to test keys only: a live key gets the 404 of an unknown route there, whatever the method.
TEST_KEY_PATHS = frozenset({"/v1/messaging/test-inbox"})


@pytest.fixture
def fuzz_headers(db, keep_test_connection):
    """Headers with a live key and with a test key, by mode."""
    workspace = WorkspaceFactory(name="Fuzz", slug="fuzz", destination_limit=1000)
    SenderNameFactory(workspace=workspace, name="ZECKTA")
    # A high rate so the fuzzer explores behaviour rather than 429s (those are covered elsewhere).
    return {
        test: {"Authorization": f"Bearer {issue_key(workspace, tps=10_000, test=test)[1]}"} for test in (False, True)
    }


@schema.parametrize()
@hypothesis_settings(suppress_health_check=list(HealthCheck), deadline=None)
def test_the_api_conforms_to_its_openapi_document(case, fuzz_headers):
    # Every check but positive_data_acceptance: some valid-looking values are refused by rules no
    # JSON Schema can state (a phone number that phonenumbers finds invalid, a sender's letter rule).
    headers = fuzz_headers[case.operation.path in TEST_KEY_PATHS]
    case.call_and_validate(headers=headers, excluded_checks=[positive_data_acceptance])
