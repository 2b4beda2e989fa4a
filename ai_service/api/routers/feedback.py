"""Feedback: ``POST /api/studies/{study}/feedback`` (accept or corrections), the review history, reviewed SRs."""

from __future__ import annotations

import io
import logging
import tempfile
from pathlib import Path
from typing import Literal

from fastapi import APIRouter, Depends, HTTPException
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from ai_service.api.auth import Principal
from ai_service.api.deps import get_state, reader, reviewer
from ai_service.api.lookup import StudyResult, study_result
from ai_service.api.state import AppState
from ai_service.encoders import ReviewedDisc, Reviewer, encode_reviewed_sr
from ai_service.errors import InputError
from ai_service.feedback import FeedbackConflict, FeedbackError, ReviewedBox, ReviewerInfo, build_record
from ai_service.results import load_stored_series
from ai_service.storage import NotFound

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/studies/{study}/feedback", tags=["feedback"], dependencies=[Depends(reader)])


class BoxIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    level: str = Field(description="disc level: L1-L2, L2-L3, L3-L4, L4-L5 or L5-S1")
    slice_index: int = Field(description="0-based slice of the series the box is drawn on")
    box: list[int] = Field(min_length=4, max_length=4, description="[x0, y0, x1, y1] pixel edges in source pixels")
    herniation: bool
    ai_level: str | None = Field(None, description="the AI disc this box started from; null for an added box")


class FeedbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: Literal["accept", "corrections"]
    corrections: list[BoxIn] | None = Field(
        None, description="for action=corrections: every disc box as the reviewer left it (missing AI discs = deleted)"
    )
    comment: str | None = Field(None, max_length=2000)


def _boxes(body: FeedbackIn, result: StudyResult) -> tuple[str, list[ReviewedBox]]:
    if body.action == "accept":
        if body.corrections:
            raise HTTPException(422, "action accept takes no corrections (send action corrections to change boxes)")
        return "accept", [ReviewedBox(d.level, d.slice_index, tuple(d.box), d.herniation, d.level)
                          for d in result.findings.discs]
    if body.corrections is None:
        raise HTTPException(422, "action corrections needs a corrections list (an empty list deletes every box)")
    return "correction", [ReviewedBox(b.level, b.slice_index, tuple(b.box), b.herniation, b.ai_level)
                          for b in body.corrections]


def _reviewed_sr(state: AppState, result: StudyResult, volume, record: dict, who: Principal):
    """The verified TID 1500 SR of the review (source series + the AI SR from the storage), as bytes and dataset."""
    from pydicom import dcmread

    ai_sr = dcmread(io.BytesIO(state.storage.read_bytes(f"{result.prefix}/sr.dcm")))
    discs = []
    for d in record["discs"]:
        ai = d["ai"]
        keep_p = ai is not None and ai["level"] == d["level"] and ai["herniation"] == d["herniation"]
        discs.append(ReviewedDisc(d["level"], d["slice_index"], tuple(d["box"]), d["herniation"],
                                  ai["probability"] if keep_p else None))
    ds = encode_reviewed_sr(volume.datasets, ai_sr, discs,
                            Reviewer(name=who.name, id=who.login, organization=who.organization), state.settings)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue(), ds


@router.post(
    "",
    summary="Accept the AI result or store corrections; produces the reviewed SR",
    status_code=201,
    responses={404: {"description": "unknown study"}, 409: {"description": "not analysed yet, or an accept after "
               "a correction"}, 422: {"description": "a box outside the image, an unknown level, ..."}},
)
async def post_feedback(
    body: FeedbackIn,
    who: Principal = Depends(reviewer),
    state: AppState = Depends(get_state),
    result: StudyResult = Depends(study_result),
):
    kind, boxes = _boxes(body, result)
    reviewer_info = ReviewerInfo(who.login, who.name, who.organization, who.credential)

    def work():
        with tempfile.TemporaryDirectory(prefix="review-", dir=state.tmp_root) as tmp:
            volume = load_stored_series(state.storage, state.series_key(result.job), Path(tmp), state.settings)
        record = build_record(kind, result.findings, boxes, reviewer_info, volume.sop_instance_uids or [],
                              comment=body.comment)
        sr_bytes, _ = _reviewed_sr(state, result, volume, record, who)
        stored = state.feedback.add(record, sr_bytes)
        return stored, state.export_review(result.job, stored)

    try:
        stored, sent = await run_in_threadpool(work)
    except FeedbackConflict as exc:
        state.metrics.errors.labels("feedback").inc()
        raise HTTPException(409, str(exc)) from None
    except (FeedbackError, InputError) as exc:  # EncodingError too: the review does not fit the source series
        state.metrics.errors.labels("feedback").inc()
        raise HTTPException(422, str(exc)) from None
    state.metrics.feedback.labels(kind).inc()
    log.info("feedback stored", extra={"study": result.study_uid, "record": stored["record_id"], "kind": kind,
                                       "reviewer": who.login})
    base = f"/api/studies/{result.study_uid}/feedback"
    return JSONResponse({"record": stored, "sent_to": sent,
                         "links": {"feedback": base, "reviewed_sr": f"{base}/{stored['record_id']}/sr"}},
                        status_code=201)


@router.get("", summary="The review in force and the history of records", dependencies=[Depends(reader)])
def get_feedback(study: str, state: AppState = Depends(get_state),
                 result: StudyResult = Depends(study_result)) -> dict:
    return state.feedback.status(study)


@router.get("/{record_id}/sr", summary="The reviewed SR a record produced", dependencies=[Depends(reader)],
            response_class=Response)
def get_reviewed_sr(study: str, record_id: str, state: AppState = Depends(get_state)):
    record = next((r for r in state.feedback.records(study) if r["record_id"] == record_id), None)
    if record is None:
        raise HTTPException(404, f"study {study} has no feedback record {record_id}")
    try:
        data = state.feedback.reviewed_sr(record)
    except NotFound:
        raise HTTPException(404, f"record {record_id} has no reviewed SR") from None
    return Response(data, media_type="application/dicom",
                    headers={"Content-Disposition": f'attachment; filename="{study}_reviewed_{record_id}.dcm"'})
