"""A small SMSC on 127.0.0.1 for the SMPP tests, made of smpplib's own PDU classes (both ends real SMPP 3.4).

It answers `bind_transceiver` (refusing a wrong password), `enquire_link`, `unbind` and `submit_sm`, each
submit taking the next scripted answer: accepted (optionally followed by a delivery receipt on the bind),
an error status (throttled ...), or the connection dropped before any answer. Receipts can also be pushed
later, on whichever bind is up then.
"""

import socket
import struct
import threading
from dataclasses import dataclass, field
from typing import Any

import smpplib.consts
import smpplib.smpp

SYSTEM_ID, PASSWORD = "zeckta", "s3cr3t!8"  # SMPP 3.4: at most 15 and 8 characters
DELIVERY_RECEIPT_ESM_CLASS = 0x04  # SMPP 3.4 section 5.2.12: the short message is an SMSC delivery receipt


class _Sequencer:
    """What smpplib's PDU classes ask of a client when the SMSC builds one."""

    def __init__(self) -> None:
        self.sequence = 0

    def next_sequence(self) -> int:
        self.sequence += 1
        return self.sequence


@dataclass(frozen=True)
class Submit:
    status: int = smpplib.consts.SMPP_ESME_ROK
    receipt: str | None = None  # e.g. "DELIVRD": a deliver_sm receipt follows the answer
    drop: bool = False  # close the connection instead of answering


@dataclass(frozen=True)
class Submitted:
    source_addr: str
    destination_addr: str
    short_message: bytes
    data_coding: int
    esm_class: int
    registered_delivery: int
    answered: bool


@dataclass
class FakeSmsc:
    port: int = 0
    submits: list[Submitted] = field(default_factory=list)
    script: list[Submit] = field(default_factory=list)
    binds: int = 0  # successful binds, reconnects included
    refused_binds: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: socket.socket | None = None
    _connection: socket.socket | None = None
    _sequencer: _Sequencer = field(default_factory=_Sequencer)
    _stopping: bool = False
    _next_id: int = 0

    def answer(self, *answers: Submit) -> None:
        with self._lock:
            self.script.extend(answers)

    def start(self) -> "FakeSmsc":
        self._server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(4)
        self.port = self._server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopping = True
        for sock in (self._connection, self._server):
            if sock is not None:
                try:
                    sock.close()
                except OSError:
                    pass

    def push_receipt(self, message_id: str, stat: str) -> None:
        """A delivery receipt on the bind that is up now (after a reconnect, for instance)."""
        assert self._connection is not None, "no bind is up"
        self._send_receipt(self._connection, message_id, stat)

    # --- the protocol -------------------------------------------------------------------------------

    def _accept(self) -> None:
        assert self._server is not None
        while not self._stopping:
            try:
                connection, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        try:
            while not self._stopping:
                pdu = self._read(connection)
                if pdu is None:
                    return
                if not self._handle(connection, pdu):
                    return
        except OSError:
            return
        finally:
            connection.close()

    def _read(self, connection: socket.socket) -> Any:
        header = self._exact(connection, 4)
        if header is None:
            return None
        (length,) = struct.unpack(">L", header)
        body = self._exact(connection, length - 4)
        if body is None:
            return None
        return smpplib.smpp.parse_pdu(header + body, client=self._sequencer, allow_unknown_opt_params=True)

    @staticmethod
    def _exact(connection: socket.socket, size: int) -> bytes | None:
        data = b""
        while len(data) < size:
            chunk = connection.recv(size - len(data))
            if not chunk:
                return None
            data += chunk
        return data

    def _respond(self, connection: socket.socket, request: Any, command: str, **fields: Any) -> None:
        pdu = smpplib.smpp.make_pdu(command, client=self._sequencer, **fields)
        pdu.sequence = request.sequence
        connection.sendall(pdu.generate())

    def _handle(self, connection: socket.socket, pdu: Any) -> bool:
        if pdu.command == "bind_transceiver":
            given = (_text(pdu.system_id), _text(pdu.password))
            if given != (SYSTEM_ID, PASSWORD):
                self.refused_binds += 1
                self._respond(
                    connection,
                    pdu,
                    "bind_transceiver_resp",
                    status=smpplib.consts.SMPP_ESME_RINVPASWD,
                    system_id="fake-smsc",
                )
                return False
            self.binds += 1
            self._connection = connection
            self._respond(connection, pdu, "bind_transceiver_resp", system_id="fake-smsc")
        elif pdu.command == "enquire_link":
            self._respond(connection, pdu, "enquire_link_resp")
        elif pdu.command == "unbind":
            self._respond(connection, pdu, "unbind_resp")
            return False
        elif pdu.command == "submit_sm":
            return self._submit(connection, pdu)
        return True

    def _submit(self, connection: socket.socket, pdu: Any) -> bool:
        with self._lock:
            answer = self.script.pop(0) if self.script else Submit()
            self.submits.append(
                Submitted(
                    _text(pdu.source_addr),
                    _text(pdu.destination_addr),
                    bytes(pdu.short_message or b""),
                    int(pdu.data_coding or 0),
                    int(pdu.esm_class or 0),
                    int(pdu.registered_delivery or 0),
                    answered=not answer.drop,
                )
            )
            self._next_id += 1
            message_id = f"smsc-{self._next_id:04d}"
        if answer.drop:
            connection.close()
            return False
        if answer.status != smpplib.consts.SMPP_ESME_ROK:
            self._respond(connection, pdu, "submit_sm_resp", status=answer.status)
            return True
        self._respond(connection, pdu, "submit_sm_resp", message_id=message_id)
        if answer.receipt:
            self._send_receipt(connection, message_id, answer.receipt)
        return True

    def _send_receipt(self, connection: socket.socket, message_id: str, stat: str) -> None:
        states = {"DELIVRD": 2, "EXPIRED": 3, "UNDELIV": 5, "REJECTD": 8}
        text = (
            f"id:{message_id} sub:001 dlvrd:001 submit date:2612021000 done date:2612021000 stat:{stat} err:000 text:"
        )
        receipt = smpplib.smpp.make_pdu(
            "deliver_sm",
            client=self._sequencer,
            source_addr="233202007745",
            destination_addr="ZECKTA",
            esm_class=DELIVERY_RECEIPT_ESM_CLASS,
            short_message=text.encode(),
            receipted_message_id=message_id,
            message_state=states.get(stat, 5),
        )
        connection.sendall(receipt.generate())


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")
