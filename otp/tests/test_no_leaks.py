"""After a full flow, neither the code nor the raw API key is anywhere but in the SMS itself."""

import base64
import json
import logging

import pytest
import redis
from django.conf import settings
from django.db import connection

from otp.delivery import SMS_QUEUE
from otp.tests.helpers import deliver_and_read_code, request_otp, session_url, verify, wrong_code
from zeckta.testing import DEST

pytestmark = pytest.mark.django_db


def all_database_text() -> str:
    """Every text, varchar, json and bytea value of every table in the public schema, as one string."""
    chunks = []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'public' AND data_type IN ('text', 'character varying', 'jsonb', 'json', 'bytea')"
        )
        for table, column, data_type in cursor.fetchall():
            cursor.execute(f'SELECT "{column}" FROM "{table}" WHERE "{column}" IS NOT NULL')  # noqa: S608
            for (value,) in cursor.fetchall():
                chunks.append(bytes(value).decode("latin-1") if data_type == "bytea" else str(value))
    return "\n".join(chunks)


def _with_decoded_body(raw: bytes) -> str:
    """A kombu message as stored in Redis, plus its base64 body decoded (where task arguments live)."""
    text = raw.decode("latin-1")
    try:
        envelope = json.loads(raw)
        return text + "\n" + base64.b64decode(envelope["body"]).decode("latin-1")
    except (ValueError, KeyError, TypeError):
        return text


def all_redis_text() -> str:
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    chunks = []
    for key in client.scan_iter():
        kind = client.type(key)
        if kind == b"list":
            chunks += [_with_decoded_body(item) for item in client.lrange(key, 0, -1)]
        elif kind == b"string":
            value = client.get(key)  # None when it expired since the scan (the SMS drain's nudge lives ms)
            chunks.append(value.decode("latin-1") if value is not None else "")
        elif kind == b"hash":
            chunks += [v.decode("latin-1") for v in client.hgetall(key).values()]
        elif kind == b"zset":
            chunks += [m.decode("latin-1") for m in client.zrange(key, 0, -1)]
    return "\n".join(chunks)


def test_neither_code_nor_key_is_stored_logged_queued_or_returned(
    api, raw_key, workspace, caplog, django_capture_on_commit_callbacks
):
    caplog.set_level(logging.DEBUG)
    workspace.otp_code_length = 10  # a 10-digit code cannot turn up by chance in a timestamp or a UUID
    workspace.save()
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    broker.delete(SMS_QUEUE)

    bodies = []
    with django_capture_on_commit_callbacks(execute=True):  # publishes the send task to the real broker
        response = request_otp(api, DEST)
    bodies.append(response.content)
    session_id = response.json()["data"]["sessionId"]
    queued_in_broker = all_redis_text()
    code = deliver_and_read_code(session_id, length=10)
    bodies.append(verify(api, session_id, wrong_code(code)).content)
    bodies.append(request_otp(api, DEST).content)  # reused
    bodies.append(verify(api, session_id, code).content)
    bodies.append(api.get(session_url(session_id)).content)

    assert "otp.tasks.drain_sms" in queued_in_broker  # the task really was published (it takes no argument)
    assert "[[]" in queued_in_broker  # the decoded body: [[], {}, {...}]
    for haystack in [all_database_text(), queued_in_broker, all_redis_text(), caplog.text, b"\n".join(bodies).decode()]:
        assert code not in haystack
        assert raw_key not in haystack
        assert raw_key[len("zk_live_") :] not in haystack
    broker.delete(SMS_QUEUE)
