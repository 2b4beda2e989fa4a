"""The acceptor side of the DICOM upper layer: one blocking thread per association, no polling.

Why not pynetdicom's acceptor: its two reactor threads poll (sleeping 1 ms and 0.2 ms between checks) and every
DIMSE message goes through pydicom datasets, ~2.5 ms of CPU per instance — as much as Orthanc spends in all, and
on a busy 2-core machine CPU is what bounds ingest. Here a thread blocks on its socket, reads whole PDUs with
``recv_into``, hands each complete C-STORE data set (a view, no copy) to the service and answers at once.
The association phase still uses pynetdicom: its PDU classes decode the A-ASSOCIATE-RQ and encode the
A-ASSOCIATE-AC, and its ``negotiate_as_acceptor`` picks presentation contexts and SCP/SCU roles, so the
negotiation behaves as pynetdicom's did. Only C-ECHO and C-STORE are served; any other DIMSE command aborts.
"""

from __future__ import annotations

import logging
import socket
import socketserver
import ssl
import struct
import threading
import time
from dataclasses import dataclass
from typing import Protocol

from pynetdicom._globals import APPLICATION_CONTEXT_NAME
from pynetdicom.pdu import A_ASSOCIATE_AC, A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import (A_ASSOCIATE, ImplementationClassUIDNotification,
                                       ImplementationVersionNameNotification, MaximumLengthNotification,
                                       SCP_SCU_RoleSelectionNegotiation)
from pynetdicom.presentation import PresentationContext, negotiate_as_acceptor

from dicom_node.dimse import C_ECHO_RQ, C_STORE_RQ, BadCommand, Command, decode_command, encode_response

log = logging.getLogger(__name__)

ASSOCIATE_RQ, ASSOCIATE_AC, ASSOCIATE_RJ, P_DATA, RELEASE_RQ, RELEASE_RP, ABORT = range(1, 8)
HEADER = struct.Struct(">BxI")
PDV_HEADER = struct.Struct(">IBB")
REQUEST_LIMIT = 1 << 20  # an A-ASSOCIATE-RQ with hundreds of contexts stays far below this
ARTIM_S = 2.0  # how long to wait for the peer to close after an A-ABORT or A-ASSOCIATE-RJ
IS_COMMAND, IS_LAST = 0x01, 0x02
# A-ABORT source 2 (service provider) reasons
UNRECOGNISED_PDU, UNEXPECTED_PDU, INVALID_PARAMETER = 0x01, 0x02, 0x06
# A-ASSOCIATE-RJ (result, source, reason) for the node's own limit
LOCAL_LIMIT_EXCEEDED = (0x02, 0x03, 0x02)


class ProtocolError(Exception):
    """The peer broke the upper-layer protocol; the association is aborted with ``reason``."""

    def __init__(self, message: str, reason: int = INVALID_PARAMETER):
        super().__init__(message)
        self.reason = reason


class Service(Protocol):
    """What the upper layer asks of the application (see dicom_node.scp.StoreSCP)."""

    def admit(self, host: str, calling_ae: str) -> tuple[int, int, int] | None:
        """None to accept, else the A-ASSOCIATE-RJ (result, source, reason)."""

    def open(self, calling_ae: str, peer: str) -> object: ...

    def store(self, session: object, context: PresentationContext, command: Command,
              data_set: bytes | memoryview) -> tuple[int, str]: ...

    def responded(self, session: object) -> None:
        """Called after each response: work the peer need not wait for."""

    def releasing(self, session: object) -> None:
        """Called on A-RELEASE-RQ, before the A-RELEASE-RP goes out."""

    def close(self, session: object, outcome: str) -> None: ...


@dataclass(frozen=True)
class AcceptorConfig:
    contexts: list[PresentationContext]
    max_pdu: int  # largest P-DATA-TF we accept (0 = unlimited), announced in the A-ASSOCIATE-AC
    implementation_class_uid: str
    implementation_version: str
    acse_timeout: float = 30.0
    network_timeout: float = 60.0


def set_nodelay(sock) -> None:
    """Disable Nagle: DIMSE is request/response; with Nagle on, every small PDU waits ~40 ms (FACTS)."""
    raw = getattr(sock, "socket", sock)
    if raw is not None:
        try:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass


def _recv_exact(sock, size: int) -> bytearray:
    buf = bytearray(size)
    view = memoryview(buf)
    got = 0
    while got < size:
        n = sock.recv_into(view[got:])
        if n == 0:
            raise ConnectionError(f"peer closed the connection ({got} of {size} bytes read)")
        got += n
    return buf


def read_pdu(sock, limit: int) -> tuple[int, bytearray, bytearray]:
    """(type, header, body) of the next PDU; ``limit`` caps the body length (0 = none)."""
    header = _recv_exact(sock, HEADER.size)
    kind, length = HEADER.unpack(header)
    if not ASSOCIATE_RQ <= kind <= ABORT:
        raise ProtocolError(f"unknown PDU type 0x{kind:02X}", UNRECOGNISED_PDU)
    if limit and length > limit:
        raise ProtocolError(f"PDU of {length} bytes exceeds the negotiated maximum {limit}")
    return kind, header, _recv_exact(sock, length)


def pdv_items(body: bytearray):
    """Yield (context id, message control header, fragment view) for each PDV of a P-DATA-TF body."""
    view, pos, end = memoryview(body), 0, len(body)
    while pos < end:
        if pos + PDV_HEADER.size > end:
            raise ProtocolError("PDV item truncated")
        length, context_id, control = PDV_HEADER.unpack_from(body, pos)
        if length < 2 or pos + 4 + length > end:
            raise ProtocolError(f"PDV item length {length} does not fit its PDU")
        yield context_id, control, view[pos + PDV_HEADER.size : pos + 4 + length]
        pos += 4 + length


def p_data(context_id: int, command: bytes, peer_max_pdu: int) -> bytes:
    """A command as P-DATA-TF PDUs, fragmented to the peer's maximum PDU length (0 = unlimited)."""
    step = max(peer_max_pdu - PDV_HEADER.size, 1) if peer_max_pdu else len(command)
    out = []
    for start in range(0, len(command), step):
        fragment = command[start : start + step]
        control = IS_COMMAND | (IS_LAST if start + step >= len(command) else 0)
        out.append(HEADER.pack(P_DATA, PDV_HEADER.size + len(fragment))
                   + PDV_HEADER.pack(2 + len(fragment), context_id, control) + fragment)
    return b"".join(out)


def reject_pdu(result: int, source: int, reason: int) -> bytes:
    return HEADER.pack(ASSOCIATE_RJ, 4) + bytes((0, result, source, reason))


def abort_pdu(reason: int) -> bytes:
    """An A-ABORT from the service provider (source 2)."""
    return HEADER.pack(ABORT, 4) + bytes((0, 0, 0x02, reason))


RELEASE_RP_PDU = HEADER.pack(RELEASE_RP, 4) + bytes(4)


def _join(fragments: list[memoryview]) -> bytes | memoryview:
    return fragments[0] if len(fragments) == 1 else b"".join(fragments)


class Association:
    """One accepted connection, from A-ASSOCIATE-RQ to release, abort or close."""

    def __init__(self, sock, address: tuple, config: AcceptorConfig, service: Service, over_limit: bool):
        self.sock = sock
        self.host, self.port = address[0], address[1]
        self.config = config
        self.service = service
        self.over_limit = over_limit
        self.peer_max_pdu = 0
        self.contexts: dict[int, PresentationContext] = {}

    def run(self) -> None:
        session, outcome = None, "closed"
        try:
            self.sock.settimeout(self.config.acse_timeout)
            request = self._request()
            if request is None:
                return
            calling = request.calling_ae_title.strip()
            rejection = LOCAL_LIMIT_EXCEEDED if self.over_limit else self.service.admit(self.host, calling)
            if rejection:
                self._send_last(reject_pdu(*rejection))
                return
            self._accept(request)
            session = self.service.open(calling, f"{self.host}:{self.port}")
            self.sock.settimeout(self.config.network_timeout)
            outcome = self._serve(session)
        except ProtocolError as exc:
            log.warning("association aborted: protocol error", extra={"peer": self.host, "error": str(exc)})
            self._send_last(abort_pdu(exc.reason))
            outcome = "aborted"
        except TimeoutError:
            log.warning("association aborted: peer silent too long", extra={"peer": self.host})
            self._send_last(abort_pdu(0x00))
            outcome = "aborted"
        except (ConnectionError, OSError) as exc:
            log.info("connection closed by the peer", extra={"peer": self.host, "error": str(exc)})
        finally:
            if session is not None:
                self.service.close(session, outcome)

    def _send_last(self, pdu: bytes) -> None:
        """Send a last PDU (A-ABORT, A-ASSOCIATE-RJ) and let the peer read it: closing with unread input would
        reset the connection and could discard the PDU at the peer, so drain until it closes (ARTIM bounds it)."""
        try:
            self.sock.sendall(pdu)
            self.sock.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + ARTIM_S
            self.sock.settimeout(ARTIM_S)
            while time.monotonic() < deadline and self.sock.recv(65536):
                pass
        except OSError:
            pass

    def _request(self) -> A_ASSOCIATE | None:
        kind, header, body = read_pdu(self.sock, REQUEST_LIMIT)
        if kind != ASSOCIATE_RQ:
            raise ProtocolError(f"expected an A-ASSOCIATE-RQ, got PDU type {kind}", UNEXPECTED_PDU)
        pdu = A_ASSOCIATE_RQ()
        try:
            pdu.decode(bytes(header + body))
            request = pdu.to_primitive()
        except Exception as exc:  # pynetdicom raises assorted errors on malformed items
            raise ProtocolError(f"malformed A-ASSOCIATE-RQ: {exc}") from None
        if request.application_context_name != APPLICATION_CONTEXT_NAME:
            self._send_last(reject_pdu(0x01, 0x01, 0x02))  # application context name not supported
            return None
        return request

    def _accept(self, request: A_ASSOCIATE) -> None:
        roles = {}
        for item in request.user_information:
            if isinstance(item, MaximumLengthNotification):
                self.peer_max_pdu = item.maximum_length_received or 0
            elif isinstance(item, SCP_SCU_RoleSelectionNegotiation):
                roles[item.sop_class_uid] = (item.scu_role, item.scp_role)
        results, role_replies = negotiate_as_acceptor(request.presentation_context_definition_list,
                                                      self.config.contexts, roles)
        self.contexts = {cx.context_id: cx for cx in results if cx.result == 0x00}
        length = MaximumLengthNotification()
        length.maximum_length_received = self.config.max_pdu
        uid = ImplementationClassUIDNotification()
        uid.implementation_class_uid = self.config.implementation_class_uid
        version = ImplementationVersionNameNotification()
        version.implementation_version_name = self.config.implementation_version
        items = [length, uid, version, *role_replies]
        accept = A_ASSOCIATE()
        accept.application_context_name = APPLICATION_CONTEXT_NAME
        accept.calling_ae_title = request.calling_ae_title
        accept.called_ae_title = request.called_ae_title
        accept.result, accept.result_source = 0x00, 0x01
        accept.presentation_context_definition_results_list = results
        accept.user_information = items
        pdu = A_ASSOCIATE_AC()
        pdu.from_primitive(accept)
        self.sock.sendall(pdu.encode())

    def _serve(self, session) -> str:
        """The data phase; returns how it ended."""
        command: Command | None = None
        command_parts: list[memoryview] = []
        data_parts: list[memoryview] = []
        context_id = 0
        while True:
            kind, _, body = read_pdu(self.sock, self.config.max_pdu)
            if kind == RELEASE_RQ:
                self.service.releasing(session)
                self.sock.sendall(RELEASE_RP_PDU)
                return "released"
            if kind == ABORT:
                return "aborted"
            if kind != P_DATA:
                raise ProtocolError(f"unexpected PDU type {kind} in the data phase", UNEXPECTED_PDU)
            for pdv_context, control, fragment in pdv_items(body):
                if pdv_context not in self.contexts:
                    raise ProtocolError(f"PDV on presentation context {pdv_context}, which was not accepted")
                if control & IS_COMMAND:
                    if command is not None:
                        raise ProtocolError("a command arrived before the previous one's data set")
                    command_parts.append(fragment)
                    if not control & IS_LAST:
                        continue
                    try:
                        command = decode_command(_join(command_parts))
                    except BadCommand as exc:
                        raise ProtocolError(str(exc)) from None
                    command_parts, context_id = [], pdv_context
                    if command.has_data_set:
                        continue
                    data_set = None
                else:
                    if command is None or pdv_context != context_id:
                        raise ProtocolError("a data set fragment without its command")
                    data_parts.append(fragment)
                    if not control & IS_LAST:
                        continue
                    data_set, data_parts = _join(data_parts), []
                self._answer(session, context_id, command, data_set)
                command = None

    def _answer(self, session, context_id: int, command: Command, data_set) -> None:
        context = self.contexts[context_id]
        if command.field == C_ECHO_RQ:
            status, comment = 0x0000, ""
        elif command.field == C_STORE_RQ and data_set is not None:
            if command.sop_class != context.abstract_syntax:
                status, comment = 0x0122, "SOP class differs from the presentation context's"
            else:
                try:
                    status, comment = self.service.store(session, context, command, data_set)
                except Exception:
                    log.exception("C-STORE handler failed")
                    status, comment = 0xC211, "unexpected error while storing"
        else:
            raise ProtocolError(f"DIMSE command 0x{command.field:04X} is not served here", UNEXPECTED_PDU)
        self.sock.sendall(p_data(context_id, encode_response(command, status, comment), self.peer_max_pdu))
        self.service.responded(session)


class AssociationServer(socketserver.ThreadingTCPServer):
    """Accepts connections (optionally TLS, optionally sharing the port with sibling processes) and runs an
    :class:`Association` in a thread for each; more than ``max_associations`` at once are rejected."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], config: AcceptorConfig, service: Service, *,
                 max_associations: int = 10, ssl_context: ssl.SSLContext | None = None, reuse_port: bool = False):
        self.config = config
        self.service = service
        self.max_associations = max_associations
        self.ssl_context = ssl_context
        self.reuse_port = reuse_port
        self._active = 0
        self._lock = threading.Lock()
        super().__init__(address, None)

    def server_bind(self) -> None:
        if self.reuse_port:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()

    def finish_request(self, request, client_address) -> None:
        set_nodelay(request)
        with self._lock:
            self._active += 1
            over_limit = self._active > self.max_associations
        try:
            sock = request
            if self.ssl_context is not None:
                request.settimeout(self.config.acse_timeout)
                try:
                    sock = self.ssl_context.wrap_socket(request, server_side=True)
                except (ssl.SSLError, OSError) as exc:
                    log.warning("TLS handshake failed", extra={"peer": client_address[0], "error": str(exc)})
                    return
            Association(sock, client_address, self.config, self.service, over_limit).run()
            if sock is not request:
                sock.close()
        finally:
            with self._lock:
                self._active -= 1

    def shutdown(self) -> None:
        """Stop accepting and release the port (associations in progress finish on their own threads)."""
        super().shutdown()
        self.server_close()

    def handle_error(self, request, client_address) -> None:
        log.exception("association thread failed", extra={"peer": client_address[0]})
