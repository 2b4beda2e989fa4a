"""A deliberately naive DICOM SCU that sends whatever bytes it is given, for the fuzz benchmark.

pynetdicom's SCU refuses to encode broken data sets and PDUs, which is exactly what the fuzzer needs to send.
The association request comes from pynetdicom's PDU classes (so a valid one is valid); everything after it is
framed here with the node's own upper-layer helpers, and the reply is classified as the peer would see it.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

from pynetdicom._globals import APPLICATION_CONTEXT_NAME
from pynetdicom.pdu import A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import A_ASSOCIATE, MaximumLengthNotification
from pynetdicom.presentation import build_context

from dicom_node.dimse import ELEMENT, UL, US
from dicom_node.upper_layer import (ABORT, ASSOCIATE_AC, ASSOCIATE_RJ, HEADER, IS_LAST, P_DATA, PDV_HEADER,
                                    RELEASE_RP, ProtocolError, p_data, read_pdu)

VERIFICATION = "1.2.840.10008.1.1"
STATUS_TAG = 0x0900


@dataclass(frozen=True)
class Reply:
    """What the node did: ``kind`` is status | abort | reject | released | closed | timeout."""

    kind: str
    status: int | None = None


def associate_rq(sop_class: str, transfer_syntax: str, calling: str = "FUZZ", called: str = "LDHASSIST",
                 max_pdu: int = 65536) -> bytes:
    """A valid A-ASSOCIATE-RQ proposing one context (id 1) for ``sop_class`` in ``transfer_syntax``."""
    context = build_context(sop_class, [transfer_syntax])
    context.context_id = 1
    primitive = A_ASSOCIATE()
    primitive.application_context_name = APPLICATION_CONTEXT_NAME
    primitive.calling_ae_title, primitive.called_ae_title = calling, called
    primitive.presentation_context_definition_list = [context]
    length = MaximumLengthNotification()
    length.maximum_length_received = max_pdu
    primitive.user_information = [length]
    pdu = A_ASSOCIATE_RQ()
    pdu.from_primitive(primitive)
    return pdu.encode()


def _uid(text: str) -> bytes:
    raw = text.encode("ascii")
    return raw + b"\0" if len(raw) % 2 else raw


def command(field: int, message_id: int, sop_class: str, sop_instance: str = "", has_data: bool = True) -> bytes:
    """A C-STORE-RQ (field 0x0001) or C-ECHO-RQ (0x0030) command set, Implicit VR Little Endian."""
    elements = [(0x0002, _uid(sop_class)), (0x0100, US.pack(field)), (0x0110, US.pack(message_id))]
    if field == 0x0001:
        elements.append((0x0700, US.pack(0)))  # priority
    elements.append((0x0800, US.pack(0x0000 if has_data else 0x0101)))
    if sop_instance:
        elements.append((0x1000, _uid(sop_instance)))
    body = b"".join(ELEMENT.pack(0x0000, tag, len(value)) + value for tag, value in elements)
    return ELEMENT.pack(0x0000, 0x0000, UL.size) + UL.pack(len(body)) + body


def data_pdus(data: bytes, max_pdu: int, context_id: int = 1) -> bytes:
    """A data set as P-DATA-TF PDUs of at most ``max_pdu`` bytes each (data-set PDVs, last one flagged)."""
    step = max(max_pdu - PDV_HEADER.size, 1)
    out = []
    for start in range(0, max(len(data), 1), step):
        fragment = data[start : start + step]
        control = IS_LAST if start + step >= len(data) else 0
        out.append(HEADER.pack(P_DATA, PDV_HEADER.size + len(fragment))
                   + PDV_HEADER.pack(2 + len(fragment), context_id, control) + fragment)
    return b"".join(out)


def _status(body: bytes | bytearray) -> int | None:
    """The Status (0000,0900) of a response command carried in one P-DATA-TF body."""
    pos = PDV_HEADER.size
    while pos + ELEMENT.size <= len(body):
        group, element, length = ELEMENT.unpack_from(body, pos)
        pos += ELEMENT.size
        if group == 0 and element == STATUS_TAG and length == 2:
            return struct.unpack_from("<H", body, pos)[0]
        pos += length
    return None


class RawAssociation:
    """One TCP connection to the node; every call returns the node's :class:`Reply` (never raises on its answer)."""

    def __init__(self, port: int, timeout: float = 15.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def __enter__(self) -> "RawAssociation":
        return self

    def __exit__(self, *exc) -> None:
        self.sock.close()

    def send(self, raw: bytes) -> None:
        try:
            self.sock.sendall(raw)
        except OSError:  # the node may already have aborted and closed: its reply is still read
            pass

    def hang_up(self) -> None:
        """Half-close: the node sees end of stream after what was sent, and may still answer."""
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def reply(self) -> Reply:
        try:
            kind, _, body = read_pdu(self.sock, 0)
        except TimeoutError:
            return Reply("timeout")
        except (ConnectionError, OSError, ProtocolError):
            return Reply("closed")
        if kind == P_DATA:
            return Reply("status", _status(body))
        return Reply({ASSOCIATE_AC: "accepted", ASSOCIATE_RJ: "reject", ABORT: "abort",
                      RELEASE_RP: "released"}.get(kind, f"pdu{kind}"))

    def associate(self, sop_class: str, transfer_syntax: str, max_pdu: int = 65536) -> Reply:
        self.send(associate_rq(sop_class, transfer_syntax, max_pdu=max_pdu))
        return self.reply()

    def store(self, sop_class: str, sop_instance: str, data: bytes, max_pdu: int = 65536,
              message_id: int = 1) -> Reply:
        self.send(p_data(1, command(0x0001, message_id, sop_class, sop_instance), max_pdu)
                  + data_pdus(data, max_pdu))
        return self.reply()

    def release(self) -> Reply:
        self.send(HEADER.pack(5, 4) + bytes(4))
        return self.reply()


def echo(port: int, timeout: float = 10.0) -> bool:
    """True when the node accepts an association and answers a C-ECHO with success."""
    try:
        with RawAssociation(port, timeout) as assoc:
            if assoc.associate(VERIFICATION, "1.2.840.10008.1.2").kind != "accepted":
                return False
            assoc.send(p_data(1, command(0x0030, 1, VERIFICATION, has_data=False), 65536))
            ok = assoc.reply() == Reply("status", 0)
            assoc.release()
            return ok
    except OSError:
        return False
