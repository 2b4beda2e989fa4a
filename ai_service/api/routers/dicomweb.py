"""STOW-RS receiver: ``POST /dicomweb/studies`` and ``POST /dicomweb/studies/{study}`` into the DICOM node's inbox.

PS3.18 §10.5 (Store Transaction): the body is ``multipart/related; type="application/dicom"`` with one Part 10
instance per part. It is streamed into one anonymous temporary file in the data directory, under a size limit
(``LDH_API_STOW_MAX_MB``, 413); then every part is stored through :class:`dicom_node.intake.Intake` as one
pseudo-association with calling AE ``STOW-RS`` (peer = the client's address): the SCP's checks, the durable inbox,
and the same assembly, routing, analysis and export as a C-STORE. The response goes out only after the
pseudo-association ended, i.e. after the Part 10 files are written and synced.

The response is the Store Instances Response Module (PS3.18 Annex I) as ``application/dicom+json`` (default) or
``application/dicom+xml`` (PS3.19 Native DICOM Model), chosen by ``Accept``. HTTP status per PS3.18 Table
10.5.3-1: 200 every instance stored, 202 some stored and some failed, 409 none stored (FailureReason per instance:
0x0122, 0xC122, 0xA900, 0xC000, 0xA700 from the intake), 400 bad multipart syntax, 415 a media type other than
``application/dicom``; plus 401/403 (credential, role ``sender`` or ``reviewer``), 406, 413, and 503 when no DICOM
node runs in this process (API-only mode). The reason of each failure is in words in an HTTP ``Warning: 299``
header too. An instance already in the inbox is a success (kept once, as the SCP acknowledges a duplicate
C-STORE), because a client retrying after a lost response must see it stored; Annex I.2.1 has no warning reason
for it, so it gets no WarningReason, only a ``Warning`` header. RetrieveURL is present but empty (Type 2): this
service offers no Retrieve Transaction.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO
from xml.etree import ElementTree

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydicom.dataset import Dataset
from python_multipart.multipart import parse_options_header

from ai_service.api.auth import Principal
from ai_service.api.body import Limit, Refused, body, receive_multipart
from ai_service.api.deps import get_state, sender
from ai_service.api.state import AppState

log = logging.getLogger(__name__)
router = APIRouter(prefix="/dicomweb", tags=["dicomweb"])

STOW_AE = "STOW-RS"
DICOM = "application/dicom"
JSON_TYPE = "application/dicom+json"
XML_TYPE = "application/dicom+xml"
MAX_WARNINGS = 20
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_UNSAFE = re.compile(r'["\\\x00-\x08\x0a-\x1f\x7f]')  # quotes, backslashes and control bytes in a Warning
_ACCEPTED = {JSON_TYPE: JSON_TYPE, "application/json": JSON_TYPE, XML_TYPE: XML_TYPE, "application/xml": XML_TYPE,
             "application/*": JSON_TYPE, "*/*": JSON_TYPE}


@dataclass
class Spool:
    """The request's parts, back to back in one anonymous temporary file (nothing to clean up after a crash, and
    memory stays flat however many parts come)."""

    file: BinaryIO
    parts: list[tuple[str, int, int]] = field(default_factory=list)  # (media type, start, end)

    def begin(self, headers: dict[str, bytes]) -> None:
        media_type = parse_options_header(headers.get("content-type", DICOM.encode()))[0].decode("latin-1").lower()
        self.parts.append((media_type, self.file.tell(), -1))

    def write(self, data: bytes) -> None:
        self.file.write(data)

    def end(self) -> None:
        media_type, start, _ = self.parts[-1]
        self.parts[-1] = (media_type, start, self.file.tell())

    def read(self, index: int) -> bytes:
        _, start, end = self.parts[index]
        self.file.seek(start)
        return self.file.read(end - start)


# ------------------------------------------------------------------------------------------------ request
def response_type(accept: str | None) -> str:
    """The response media type the ``Accept`` header allows (highest q first); raises 406."""
    if not accept or not accept.strip():
        return JSON_TYPE
    ranked = []
    for i, entry in enumerate(accept.split(",")):
        media, params = parse_options_header(entry.strip())
        try:
            q = float(params.get(b"q", b"1"))
        except ValueError:
            q = 0.0
        if q > 0:
            ranked.append((-q, i, media.decode("latin-1").lower()))
    for _, _, media in sorted(ranked):
        if media in _ACCEPTED:
            return _ACCEPTED[media]
    raise Refused(406, f"Accept {accept!r} allows none of {JSON_TYPE}, {XML_TYPE}")


def boundary_of(content_type: str | None) -> bytes:
    """The multipart boundary of a STOW-RS request of Part 10 instances; raises 415 / 400."""
    media, params = parse_options_header(content_type or "")
    if media != b"multipart/related":
        raise Refused(415, f"Content-Type must be multipart/related; type=\"{DICOM}\" "
                               f"(got {content_type or 'none'})")
    root = params.get(b"type", b"").decode("latin-1").lower()
    if root != DICOM:
        raise Refused(415, f"only Part 10 instances (type=\"{DICOM}\") are accepted, not type=\"{root}\"")
    if not params.get(b"boundary"):
        raise Refused(400, "the multipart/related Content-Type has no boundary")
    return params[b"boundary"]


async def receive_parts(request: Request, boundary: bytes, max_mib: int, tmp_dir: Path) -> Spool:
    """Stream the body into a :class:`Spool`; the caller closes its file (closed here on an exception)."""
    chunks = body(request, Limit(max_mib, "the request", "LDH_API_STOW_MAX_MB"))
    spool = Spool(tempfile.TemporaryFile(dir=tmp_dir))
    try:
        await receive_multipart(chunks, boundary, spool)
        if not spool.parts:
            raise Refused(400, "the request holds no instances")
        wrong = sorted({media for media, _, _ in spool.parts if media != DICOM})
        if wrong:
            raise Refused(415, f"every part must be {DICOM}; got {', '.join(wrong)}")
    except BaseException:
        spool.file.close()
        raise
    return spool


def store_parts(node, spool: Spool, study: str | None, peer: str) -> list:
    """Every part through one pseudo-association; returns when its files are written and synced."""
    from dicom_node.intake import Intake

    with Intake(node.inbox, node.db, STOW_AE, peer) as batch:
        outcomes = [batch.store(spool.read(i), study_uid=study) for i in range(len(spool.parts))]
    log.info("STOW-RS request stored", extra={"assoc": batch.id, "stored": batch.stored,
                                              "duplicates": batch.duplicates, "failed": batch.failed})
    return outcomes


# ----------------------------------------------------------------------------------------------- response
def response_module(outcomes: list) -> Dataset:
    """The Store Instances Response Module (PS3.18 Table I.1-1)."""
    ds = Dataset()
    ds.RetrieveURL = None  # Type 2: no Retrieve Transaction is offered here
    failed, stored = [], []
    for outcome in outcomes:
        item = Dataset()
        item.ReferencedSOPClassUID = outcome.sop_class_uid or None
        item.ReferencedSOPInstanceUID = outcome.sop_instance_uid or None
        if outcome.ok:
            item.RetrieveURL = None
            stored.append(item)
        else:
            item.FailureReason = outcome.status
            failed.append(item)
    if failed:
        ds.FailedSOPSequence = failed
    if stored:
        ds.ReferencedSOPSequence = stored
    return ds


def http_status(outcomes: list) -> int:
    stored = sum(o.ok for o in outcomes)
    return 200 if stored == len(outcomes) else 202 if stored else 409


def warnings(outcomes: list) -> list[str]:
    """``Warning: 299`` values saying in words why an instance failed or was already there."""
    out = []
    for i, outcome in enumerate(outcomes):
        text = outcome.reason if not outcome.ok else "already stored; kept once" if outcome.duplicate else ""
        if text:
            who = outcome.sop_instance_uid or f"part {i + 1}"
            text = f"{who}: {text}".encode("latin-1", "replace").decode("latin-1")
            # a header value may hold no control byte (the HTTP server drops the connection instead of answering)
            out.append('299 ldh-assist "' + _UNSAFE.sub("'", text)[:300] + '"')
    if len(out) > MAX_WARNINGS:
        out = out[:MAX_WARNINGS] + [f'299 ldh-assist "and {len(out) - MAX_WARNINGS} more"']
    return out


def to_xml(ds: Dataset) -> bytes:
    """PS3.19 Native DICOM Model of a data set of string, integer and sequence elements."""
    root = ElementTree.Element("NativeDicomModel", xmlns="http://dicom.nema.org/PS3.19/models/NativeDICOM")
    _xml_elements(root, ds)
    return ElementTree.tostring(root, encoding="utf-8", xml_declaration=True)


def _xml_elements(parent: ElementTree.Element, ds: Dataset) -> None:
    for elem in ds:
        node = ElementTree.SubElement(parent, "DicomAttribute", tag=f"{elem.tag:08X}", vr=elem.VR,
                                      keyword=elem.keyword)
        if elem.VR == "SQ":
            for n, item in enumerate(elem.value, 1):
                _xml_elements(ElementTree.SubElement(node, "Item", number=str(n)), item)
        elif elem.value is not None and elem.value != "":
            values = elem.value if elem.VM > 1 else [elem.value]
            for n, v in enumerate(values, 1):
                ElementTree.SubElement(node, "Value", number=str(n)).text = str(v)


def render(ds: Dataset, media_type: str) -> bytes:
    return to_xml(ds) if media_type == XML_TYPE else json.dumps(ds.to_json_dict()).encode()


# ------------------------------------------------------------------------------------------------- routes
_RESPONSES = {200: {"description": "every instance stored (on disk)"},
              202: {"description": "some instances stored, others failed (FailedSOPSequence says why)"},
              400: {"description": "malformed multipart body or study UID"}, 406: {"description": "Accept"},
              409: {"description": "no instance stored"}, 413: {"description": "over LDH_API_STOW_MAX_MB"},
              415: {"description": "not multipart/related of application/dicom parts"},
              503: {"description": "no DICOM node runs in this process (API-only mode)"}}


@router.post("/studies", summary="STOW-RS: store Part 10 instances (PS3.18 10.5)", responses=_RESPONSES)
async def store_instances(request: Request, who: Principal = Depends(sender),
                          state: AppState = Depends(get_state)) -> Response:
    return await _store(request, None, state)


@router.post("/studies/{study}", summary="STOW-RS: store Part 10 instances of one study (PS3.18 10.5)",
             responses=_RESPONSES)
async def store_study_instances(study: str, request: Request, who: Principal = Depends(sender),
                                state: AppState = Depends(get_state)) -> Response:
    if len(study) > 64 or not _UID.match(study):
        raise HTTPException(400, f"{study[:80]!r} is not a Study Instance UID")
    return await _store(request, study, state)


async def _store(request: Request, study: str | None, state: AppState) -> Response:
    if state.bridge is None:
        raise HTTPException(503, "STOW-RS stores into the DICOM node, which does not run in this process: run "
                                 "`ldh serve` (with its analyzer, i.e. without --receive-only)")
    try:
        media_type = response_type(request.headers.get("accept"))
        boundary = boundary_of(request.headers.get("content-type"))
        spool = await receive_parts(request, boundary, state.settings.api_stow_max_mb, state.tmp_root)
    except Refused as exc:
        state.metrics.errors.labels("stow").inc()
        raise HTTPException(exc.status, exc.message) from None
    try:
        peer = request.client.host if request.client else "unknown"
        outcomes = await run_in_threadpool(store_parts, state.bridge.node, spool, study, peer)
    finally:
        spool.file.close()
    headers = {"Warning": ", ".join(w)} if (w := warnings(outcomes)) else {}
    return Response(render(response_module(outcomes), media_type), status_code=http_status(outcomes),
                    media_type=media_type, headers=headers)
