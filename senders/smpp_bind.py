"""The process that holds one SMPP route's bind: `manage.py smpp_bind ROUTE` runs `SmppBind.run()`.

It binds as a transceiver, takes the route's SMS jobs from Redis (`senders.gateways.smpp`), submits each
(long UCS-2 text split with a UDH), answers the waiting worker with the SMSC's `submit_sm_resp`, and hands
every delivery receipt (`deliver_sm`) to `on_receipts`. It keeps the link alive with `enquire_link` and
reconnects with a doubling backoff when the bind is refused or the connection drops; a job whose answer
never came gets a transient answer, so the worker retries it with the same text.
"""

import json
import logging
import select
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis
import smpplib.client
import smpplib.consts
import smpplib.exceptions
import smpplib.gsm
import smpplib.smpp
from django.conf import settings

from senders.gateways.base import Receipt
from senders.gateways.smpp import decrypt_job, jobs_key, receipt_from_deliver_sm, redis_client, reply_key

logger = logging.getLogger(__name__)

ENQUIRE_LINK_SECONDS = 30.0
BACKOFF_MAX_SECONDS = 60.0
REPLY_TTL_SECONDS = 60


@dataclass
class _Pending:
    job_id: str
    parts_left: int
    message_id: str = ""


@dataclass
class SmppBind:
    route_key: str
    route_name: str
    config: dict[str, Any]
    on_receipts: Callable[[list[Receipt]], object]
    stop_requested: bool = False
    backoff: float = 1.0
    _client: smpplib.client.Client | None = None
    _pending: dict[int, _Pending] = field(default_factory=dict)  # submit_sm sequence -> job
    _answered: set[str] = field(default_factory=set)  # jobs whose worker has its answer
    _last_activity: float = 0.0

    def run(self, *, poll_seconds: float = 0.2) -> None:
        """Holds the bind until stop() is called; never raises for an SMSC or network failure."""
        while not self.stop_requested:
            try:
                self._connect()
                self.backoff = 1.0
                while not self.stop_requested:
                    self._serve_once(poll_seconds)
            except (smpplib.exceptions.ConnectionError, smpplib.exceptions.PDUError, OSError) as exc:
                logger.warning("smpp route %s: %s; reconnecting in %.0fs", self.route_name, exc, self.backoff)
                self._fail_pending(f"connection lost: {exc}")
                self._close()
                self._sleep(self.backoff)
                self.backoff = min(self.backoff * 2, BACKOFF_MAX_SECONDS)
        self._close()

    def stop(self) -> None:
        self.stop_requested = True

    # --- the bind ---------------------------------------------------------------------------------

    def _connect(self) -> None:
        context = ssl.create_default_context() if str(self.config.get("tls", "")).lower() == "true" else None
        client = smpplib.client.Client(
            self.config["host"],
            int(self.config["port"]),
            timeout=10,
            ssl_context=context,
            allow_unknown_opt_params=True,
            logger_name=f"zeckta.smpp.{self.route_name}",
        )
        client.set_message_sent_handler(self._submitted)
        client.set_message_received_handler(self._delivered)
        client.set_error_pdu_handler(self._error_pdu)
        client.connect()
        self._client = client
        client.bind_transceiver(
            system_id=self.config["system_id"],
            password=self.config["password"],
            system_type=self.config.get("system_type", ""),
        )
        self._last_activity = time.monotonic()
        logger.info("smpp route %s: bound to %s:%s", self.route_name, self.config["host"], self.config["port"])

    def _close(self) -> None:
        if self._client is not None:
            try:
                self._client.disconnect()
            except Exception:  # already gone: nothing to tidy
                logger.debug("smpp route %s: disconnect failed", self.route_name, exc_info=True)
            self._client = None

    def _serve_once(self, poll_seconds: float) -> None:
        assert self._client is not None
        readable, _, _ = select.select([self._client._socket], [], [], 0)
        while readable:
            self._client.read_once(auto_send_enquire_link=False)
            self._last_activity = time.monotonic()
            readable, _, _ = select.select([self._client._socket], [], [], 0)
        job = self._next_job(poll_seconds)
        if job is not None:
            self._submit(job)
        elif time.monotonic() - self._last_activity > ENQUIRE_LINK_SECONDS:
            self._client.send_pdu(smpplib.smpp.make_pdu("enquire_link", client=self._client))
            self._last_activity = time.monotonic()

    def _next_job(self, poll_seconds: float) -> dict[str, Any] | None:
        try:
            item = redis_client(settings.REDIS_URL).blpop([jobs_key(self.route_key)], timeout=poll_seconds)
        except redis.RedisError as exc:
            logger.warning("smpp route %s: job queue unavailable: %s", self.route_name, exc)
            self._sleep(1.0)
            return None
        if item is None:
            return None
        job = decrypt_job(item[1] if isinstance(item[1], bytes) else item[1].encode())
        if job.get("deadline", 0) < time.time():
            # The worker stopped waiting and will send it again: submitting this copy would send it twice.
            logger.info("smpp route %s: dropped a job past its deadline", self.route_name)
            return None
        return job

    def _submit(self, job: dict[str, Any]) -> None:
        assert self._client is not None
        parts, data_coding, esm_class = smpplib.gsm.make_parts(job["text"])
        source_ton = smpplib.consts.SMPP_TON_INTL if job["src"].startswith("+") else smpplib.consts.SMPP_TON_ALNUM
        for index, part in enumerate(parts):
            pdu = self._client.send_message(
                source_addr_ton=source_ton,
                source_addr_npi=smpplib.consts.SMPP_NPI_UNK,
                source_addr=job["src"].lstrip("+"),
                dest_addr_ton=smpplib.consts.SMPP_TON_INTL,
                dest_addr_npi=smpplib.consts.SMPP_NPI_ISDN,
                destination_addr=job["to"].lstrip("+"),
                short_message=part,
                data_coding=data_coding,
                esm_class=esm_class,
                registered_delivery=smpplib.consts.SMPP_SMSC_DELIVERY_RECEIPT_BOTH if index == 0 else 0,
            )
            self._pending[pdu.sequence] = _Pending(job_id=job["job"], parts_left=len(parts) - index)
        self._last_activity = time.monotonic()

    # --- what the SMSC says -------------------------------------------------------------------------

    def _submitted(self, pdu: Any, **kwargs: Any) -> None:
        pending = self._pending.pop(pdu.sequence, None)
        if pending is None:
            return
        message_id = pdu.message_id.decode() if isinstance(pdu.message_id, bytes) else str(pdu.message_id or "")
        # The receipt names the first part's id: that one stands for the SMS.
        if not self._first_answer_given(pending.job_id):
            self._reply(pending.job_id, {"ok": True, "status": 0, "message_id": message_id})

    def _error_pdu(self, pdu: Any) -> None:
        pending = self._pending.pop(pdu.sequence, None)
        if pending is None:
            logger.warning("smpp route %s: %s answered status %s", self.route_name, pdu.command, pdu.status)
            return
        if not self._first_answer_given(pending.job_id):
            self._reply(
                pending.job_id,
                {
                    "ok": False,
                    "status": int(pdu.status),
                    "error": smpplib.consts.DESCRIPTIONS.get(pdu.status, "unknown status"),
                },
            )

    def _delivered(self, pdu: Any, **kwargs: Any) -> int:
        receipt = receipt_from_deliver_sm(pdu)
        if receipt is not None:
            self.on_receipts([receipt])
        return smpplib.consts.SMPP_ESME_ROK

    # --- answers to the waiting workers ---------------------------------------------------------------

    def _first_answer_given(self, job_id: str) -> bool:
        answered = job_id in self._answered
        self._answered.add(job_id)
        return answered

    def _reply(self, job_id: str, reply: dict[str, Any]) -> None:
        key = reply_key(self.route_key, job_id)
        try:
            client = redis_client(settings.REDIS_URL)
            client.rpush(key, json.dumps(reply))
            client.expire(key, REPLY_TTL_SECONDS)
        except redis.RedisError as exc:
            # The worker times out and retries with the same text: sent again, never lost.
            logger.warning("smpp route %s: could not answer job %s: %s", self.route_name, job_id, exc)

    def _fail_pending(self, error: str) -> None:
        for pending in self._pending.values():
            if not self._first_answer_given(pending.job_id):
                self._reply(pending.job_id, {"ok": False, "transient": True, "status": -1, "error": error})
        self._pending.clear()

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.stop_requested and time.monotonic() < deadline:
            time.sleep(min(0.1, deadline - time.monotonic()))
