import re

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db

OPERATIONS = {
    ("/v1/messaging/otp/request", "post"),
    ("/v1/messaging/otp/verify", "post"),
    ("/v1/messaging/otp/{session_id}", "get"),
    ("/v1/messaging/otp/{session_id}/resend", "post"),
    ("/v1/messaging/otp/{session_id}/cancel", "post"),
    ("/v1/messaging/test-inbox", "get"),  # test keys only
    ("/v1/messaging/sender-names", "get"),
    ("/v1/messaging/sender-names", "post"),
    ("/v1/messaging/sender-names/{sender_name_id}", "get"),
    ("/v1/messaging/sender-names/{sender_name_id}", "put"),
    ("/v1/messaging/sender-names/{sender_name_id}", "delete"),
    ("/v1/messaging/webhooks", "get"),
    ("/v1/messaging/webhooks", "post"),
    ("/v1/messaging/webhooks/{webhook_id}", "get"),
    ("/v1/messaging/webhooks/{webhook_id}", "delete"),
    ("/v1/messaging/webhooks/{webhook_id}/rotate-secret", "post"),
    ("/v1/messaging/fraud/blocks", "get"),
    ("/v1/messaging/fraud/blocks/{block_id}", "delete"),
    ("/v1/webhooks/sms/{route_id}", "post"),  # providers' receipts: their own authentication, no key
    ("/v1/webhooks/sms/{route_id}", "get"),  # WhatsApp's webhook verification handshake (API.md section 15)
    ("/v1/messaging/sms", "post"),
    ("/v1/messaging/sms/{message_id}", "get"),
    ("/v1/messaging/hooks/supabase", "get"),
    ("/v1/messaging/hooks/supabase", "post"),
    ("/v1/messaging/hooks/supabase/{hook_id}", "get"),
    ("/v1/messaging/hooks/supabase/{hook_id}", "delete"),
}
KEYLESS = {"/v1/webhooks/sms/{route_id}"}
# Each operation's resource: generated clients file their calls under it (openapi-python-client: api.otp...).
RESOURCES = {
    "/v1/messaging/otp/": "otp",
    "/v1/messaging/test-inbox": "test-inbox",
    "/v1/messaging/sender-names": "sender-names",
    "/v1/messaging/webhooks": "webhooks",
    "/v1/messaging/fraud/": "fraud",
    "/v1/webhooks/sms/": "receipts",  # the providers' callbacks, apart from the clients' webhooks
    "/v1/messaging/sms": "relay",
    "/v1/messaging/hooks/": "hooks",
}


@pytest.fixture
def document():
    response = Client().get("/openapi.json")
    assert response.status_code == 200 and response["Content-Type"].split(";")[0].endswith("json")
    return response.json()


def test_the_document_is_public_and_lists_every_operation(document):
    found = {(path, method) for path, item in document["paths"].items() for method in item}
    assert found == OPERATIONS
    assert len({op["operationId"] for item in document["paths"].values() for op in item.values()}) == len(OPERATIONS)


def test_every_operation_is_tagged_with_its_resource_and_every_tag_is_described(document):
    tags = {
        (path, method): operation.get("tags")
        for path, item in document["paths"].items()
        for method, operation in item.items()
    }
    expected = {
        (path, method): [next(tag for prefix, tag in RESOURCES.items() if path.startswith(prefix))]
        for path, method in tags
    }
    assert tags == expected
    declared = {tag["name"]: tag.get("description") for tag in document["tags"]}
    assert set(declared) == set(RESOURCES.values()) and all(declared.values())
    assert not {"api", "v1", "messaging"} & {tag for listed in tags.values() for tag in listed}


def test_it_describes_the_bearer_scheme_on_every_operation(document):
    scheme = document["components"]["securitySchemes"]["ApiKey"]
    assert scheme == {**scheme, "type": "http", "scheme": "bearer"}
    for path, item in document["paths"].items():
        for operation in item.values():
            if path in KEYLESS:
                assert operation.get("security") in (None, [], [{}])
                continue
            assert {"ApiKey": []} in operation["security"]
            assert "401" in operation["responses"]


def test_cancel_is_documented_with_its_answers(document):
    cancel = document["paths"]["/v1/messaging/otp/{session_id}/cancel"]["post"]
    assert {"200", "401", "404", "409", "415"} <= set(cancel["responses"])
    assert "SESSION_NOT_PENDING" in cancel["description"]


def test_the_verify_outcomes_and_request_errors_are_documented(document):
    verify = document["paths"]["/v1/messaging/otp/verify"]["post"]["responses"]
    assert {"200", "400", "404", "409", "410", "423", "429"} <= set(verify)
    request = document["paths"]["/v1/messaging/otp/request"]["post"]
    assert {"200", "400", "401", "402", "403", "413", "415", "429", "503"} <= set(request["responses"])
    examples = request["requestBody"]["content"]["application/json"]["examples"]
    assert any(e["value"] == {"dest": "+233202007745", "src": "ZECKTA", "purpose": "LOGIN"} for e in examples.values())


def test_the_docs_page_works_offline(client):
    response = client.get("/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    sources = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert sources and not [s for s in sources if s.startswith(("http://", "https://", "//"))]
    for asset in (s for s in sources if s.startswith("/static/")):
        assert client.get(asset).status_code == 200, asset


# API.md section 1's table, and the outcomes a failed verify answers with as its code.
CONTRACT_CODES = {
    "VALIDATION_ERROR",
    "MALFORMED_JSON",
    "INVALID_HOST",
    "AUTHENTICATION_FAILED",
    "INSUFFICIENT_BALANCE",
    "WORKSPACE_SUSPENDED",
    "HTTPS_REQUIRED",
    "DESTINATION_BLOCKED",
    "NOT_FOUND",
    "METHOD_NOT_ALLOWED",
    "PAYLOAD_TOO_LARGE",
    "UNSUPPORTED_MEDIA_TYPE",
    "IDEMPOTENCY_KEY_REUSED",
    "SESSION_NOT_PENDING",
    "RESEND_LIMIT_REACHED",
    "SENDER_NAME_EXISTS",
    "SENDER_NAME_NOT_EDITABLE",
    "RATE_LIMITED",
    "DESTINATION_RATE_LIMITED",
    "RESEND_TOO_SOON",
    "WORKSPACE_QUOTA_EXCEEDED",
    "INTERNAL_ERROR",
    "SERVICE_UNAVAILABLE",
    "INVALID",
    "EXPIRED",
    "MAX_ATTEMPTS_REACHED",
    "ALREADY_USED",
    "LIVE_KEY_REQUIRED",
    "RELAY_DISABLED",
}


def test_every_error_code_of_the_contract_is_in_the_document(document):
    envelope = document["components"]["schemas"]["ErrorEnvelope"]
    assert envelope["properties"]["code"]["allOf"] == [{"$ref": "#/components/schemas/ErrorCode"}]
    assert CONTRACT_CODES <= set(document["components"]["schemas"]["ErrorCode"]["enum"])
    text = str(document)
    assert all(code in text for code in ("HTTPS_REQUIRED", "INVALID_HOST", "WORKSPACE_QUOTA_EXCEEDED"))
    verify = document["paths"]["/v1/messaging/otp/verify"]["post"]["responses"]["404"]
    assert "NOT_FOUND" in verify["description"]


def test_the_sender_name_changes_document_the_403_of_a_test_key(document):
    paths = document["paths"]
    changes = [
        paths["/v1/messaging/sender-names"]["post"],
        paths["/v1/messaging/sender-names/{sender_name_id}"]["put"],
        paths["/v1/messaging/sender-names/{sender_name_id}"]["delete"],
    ]
    for operation in changes:
        assert "LIVE_KEY_REQUIRED" in operation["responses"]["403"]["description"], operation["operationId"]
    assert "LIVE_KEY_REQUIRED" not in paths["/v1/messaging/sender-names"]["get"]["responses"]["403"]["description"]


def test_resend_is_documented_with_its_answers_and_examples(document):
    resend = document["paths"]["/v1/messaging/otp/{session_id}/resend"]["post"]
    assert {"200", "402", "404", "409", "410", "429"} <= set(resend["responses"])
    assert all(
        code in resend["description"] for code in ("RESEND_TOO_SOON", "RESEND_LIMIT_REACHED", "SESSION_NOT_PENDING")
    )
    assert "Idempotency-Key" in {parameter["name"] for parameter in resend["parameters"]}
    resent = resend["responses"]["200"]["content"]["application/json"]["examples"]["Resent"]["value"]
    assert resent["data"]["resends"] == 1 and resent["message"] == "OTP resent successfully"


def test_the_transaction_is_documented_on_request_verify_and_the_session(document):
    schemas = document["components"]["schemas"]
    for name in ("OtpRequestInputRequest", "OtpVerifyInputRequest", "OtpSessionData"):
        assert "transaction" in schemas[name]["properties"], name
    assert {"resendAvailableInSeconds", "resends"} <= set(schemas["OtpSessionData"]["properties"])
    assert "resendAvailableInSeconds" in schemas["OtpRequestData"]["properties"]


def test_the_test_inbox_is_documented_with_its_answers_and_an_example(document):
    inbox = document["paths"]["/v1/messaging/test-inbox"]["get"]
    assert {"200", "400", "401", "404", "429"} <= set(inbox["responses"])
    assert [(p["name"], p["in"], p["required"]) for p in inbox["parameters"]] == [("dest", "query", True)]
    assert {"ApiKey": []} in inbox["security"] and "zk_test_" in inbox["description"]
    listed = inbox["responses"]["200"]["content"]["application/json"]["examples"]["TestInbox"]["value"]["data"]
    assert set(listed[0]) == {"sessionId", "dest", "src", "text", "createdAt"}
    schemas = document["components"]["schemas"]
    assert set(schemas["InboxMessage"]["properties"]) == {"sessionId", "dest", "src", "text", "createdAt"}


def test_the_fraud_blocks_are_documented_and_a_test_key_cannot_lift(document):
    paths = document["paths"]
    listing = paths["/v1/messaging/fraud/blocks"]["get"]
    lift = paths["/v1/messaging/fraud/blocks/{block_id}"]["delete"]
    assert {"200", "400", "401", "429"} <= set(listing["responses"])
    assert {"page", "pageSize"} <= {parameter["name"] for parameter in listing["parameters"]}
    assert "LIVE_KEY_REQUIRED" not in listing["responses"]["403"]["description"]
    assert {"200", "401", "403", "404"} <= set(lift["responses"])
    assert "LIVE_KEY_REQUIRED" in lift["responses"]["403"]["description"]
    block = document["components"]["schemas"]["FraudBlock"]["properties"]
    assert set(block) == {"blockId", "scope", "value", "rule", "mode", "createdAt", "endsAt", "liftedAt", "evidence"}


def test_the_requests_that_send_document_the_fraud_guards_403(document):
    paths = document["paths"]
    for operation in (
        paths["/v1/messaging/otp/request"]["post"],
        paths["/v1/messaging/otp/{session_id}/resend"]["post"],
    ):
        assert "DESTINATION_BLOCKED" in operation["responses"]["403"]["description"], operation["operationId"]
    assert "DESTINATION_BLOCKED" not in paths["/v1/messaging/otp/verify"]["post"]["responses"].get("403", {}).get(
        "description", ""
    )  # verifying an existing session is never blocked
