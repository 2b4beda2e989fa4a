"""Studies: upload (``POST /api/studies``), list, one study, its findings / SEG / SR / preview / slice images."""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from ai_service.api.body import Refused
from ai_service.api.deps import get_state, reader, reviewer
from ai_service.api.lookup import StudyResult, study_job, study_result
from ai_service.api.state import AppState
from ai_service.api.uploads import receive
from ai_service.errors import InputError
from ai_service.ingest import IngestError, prepare_upload
from ai_service.jobs import Job
from ai_service.results import add_page_images
from ai_service.storage import NotFound, StorageError

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/studies", tags=["studies"], dependencies=[Depends(reader)])

FILES = {
    "seg": ("seg.dcm", "application/dicom"),
    "sr": ("sr.dcm", "application/dicom"),
    "preview.dcm": ("preview.dcm", "application/dicom"),
    "preview.png": ("preview.png", "image/png"),
    "discs.mha": ("discs.mha", "application/octet-stream"),
}


def links(study: str, job: Job | None = None) -> dict:
    base = f"/api/studies/{study}"
    out = {"study": base, "findings": f"{base}/findings", "seg": f"{base}/seg", "sr": f"{base}/sr",
           "preview": f"{base}/preview.png", "feedback": f"{base}/feedback"}
    if job is not None:
        out["job"] = f"/api/jobs/{job.id}"
    return out


def _job_body(job: Job, created: bool) -> dict:
    return {"job": job.to_dict(), "created": created, "study_instance_uid": job.study_uid,
            "series_instance_uid": job.series_uid, "links": links(job.study_uid, job)}


@router.post(
    "",
    summary="Upload one series (MHA/NIfTI, JPG/PNG slices, DICOM files or a zip of them) and queue its analysis",
    status_code=202,
    responses={200: {"description": "the same series was uploaded before: its existing job"},
               201: {"description": "analysed within `wait` seconds"},
               400: {"description": "empty or malformed upload"}, 413: {"description": "over the size limit"},
               415: {"description": "not an image format we read"},
               422: {"description": "an image we cannot analyse (the message says why)"},
               503: {"description": "the models are not loaded"}},
)
async def upload(
    request: Request,
    who=Depends(reviewer),
    wait: float = Query(0, ge=0, le=300, description="seconds to wait for the analysis before answering"),
    filename: str | None = Query(None, description="name of the file for a raw (non-multipart) body"),
    state: AppState = Depends(get_state),
):
    settings = state.settings
    if state.engine_error:
        raise HTTPException(503, state.engine_error)
    work = Path(tempfile.mkdtemp(prefix="upload-", dir=state.tmp_root))
    try:
        try:
            staged = await receive(request, work / "in", settings.api_max_upload_mb, settings.api_max_upload_files)
        except Refused as exc:
            state.metrics.uploads.labels("refused").inc()
            raise HTTPException(exc.status, exc.message) from None
        state.metrics.upload_bytes.inc(staged.total_bytes)
        if not staged.files:
            state.metrics.uploads.labels("refused").inc()
            raise HTTPException(400, "the upload holds no file: attach the series' files")
        try:
            prepared = await run_in_threadpool(prepare_upload, staged.files, staged.fields, work, settings)
            job, created = await run_in_threadpool(state.submit_series, prepared)
        except IngestError as exc:
            state.metrics.uploads.labels("refused").inc()
            raise HTTPException(exc.status, str(exc)) from None
        except InputError as exc:
            state.metrics.uploads.labels("refused").inc()
            raise HTTPException(422, str(exc)) from None
        except StorageError as exc:
            state.metrics.errors.labels("storage").inc()
            raise HTTPException(503, f"the upload could not be stored ({exc}); nothing was kept") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    state.metrics.uploads.labels("accepted").inc()
    log.info("upload accepted", extra={"study": job.study_uid, "series": job.series_uid, "job": job.id,
                                       "reviewer": who.login, "bytes": staged.total_bytes})
    status = 202 if created else 200
    if wait > 0:
        job = await run_in_threadpool(state.jobs.wait, job.id, wait)
        if job.state == "failed":
            raise HTTPException(job.error_status if job.error_status and job.error_status < 500 else 500, job.error)
        if job.state == "done" and created:
            status = 201
    body = _job_body(job, created)
    body["warnings"] = prepared.warnings
    return JSONResponse(body, status_code=status, headers={"Location": f"/api/jobs/{job.id}"})


@router.get("", summary="Uploaded studies with their analysis state", dependencies=[Depends(reader)])
def list_studies(state: AppState = Depends(get_state), limit: int = Query(200, ge=1, le=1000)) -> dict:
    out = []
    for job in state.jobs.studies(limit):
        current = state.feedback.current(job.study_uid)
        out.append({
            "study_instance_uid": job.study_uid,
            "series_instance_uid": job.series_uid,
            "state": job.state,
            "error": job.error,
            "source": job.source,
            "job_id": job.id,
            "created": job.to_dict()["created"],
            "model_version": job.model_version,
            "review": None if current is None else {"kind": current["kind"], "record_id": current["record_id"],
                                                    "reviewer": current["reviewer"]["login"]},
            "links": links(job.study_uid, job),
        })
    return {"studies": out}


@router.get("/{study}", summary="One study: job state, findings summary, review state", dependencies=[Depends(reader)])
def get_study(study: str, state: AppState = Depends(get_state), job: Job = Depends(study_job)) -> dict:
    body = {"study_instance_uid": study, "series_instance_uid": job.series_uid, "job": job.to_dict(),
            "links": links(study, job), "findings": None, "review": state.feedback.status(study)}
    done = state.jobs.latest_done(study) or (job if job.state == "done" else None)
    if done is not None:
        body["findings"] = study_result(study, state).findings.to_dict()
    return body


@router.get("/{study}/findings", summary="The AI findings (findings.json)", dependencies=[Depends(reader)])
def findings(result: StudyResult = Depends(study_result)) -> dict:
    return result.findings.to_dict()


def _file(state: AppState, result: StudyResult, key: str) -> Response:
    name, media = FILES[key]
    try:
        data = state.storage.read_bytes(f"{result.prefix}/{name}")
    except NotFound:
        raise HTTPException(404, f"study {result.study_uid} has no {name} (no disc was found, or it was not emitted)") \
            from None
    stem = name.rsplit(".", 1)
    download = f"{result.study_uid}_{stem[0]}.{stem[1]}"
    return Response(data, media_type=media, headers={"Content-Disposition": f'attachment; filename="{download}"'})


@router.get("/{study}/seg", summary="DICOM SEG of the discs", dependencies=[Depends(reader)],
            response_class=Response)
def seg(state: AppState = Depends(get_state), result: StudyResult = Depends(study_result)):
    return _file(state, result, "seg")


@router.get("/{study}/sr", summary="TID 1500 SR of the AI findings", dependencies=[Depends(reader)],
            response_class=Response)
def sr(state: AppState = Depends(get_state), result: StudyResult = Depends(study_result)):
    return _file(state, result, "sr")


@router.get("/{study}/preview.png", summary="Preview image with the AI boxes", dependencies=[Depends(reader)],
            response_class=Response)
def preview(state: AppState = Depends(get_state), result: StudyResult = Depends(study_result)):
    return _file(state, result, "preview.png")


@router.get("/{study}/discs.mha", summary="Label map on the series grid", dependencies=[Depends(reader)],
            response_class=Response)
def discs(state: AppState = Depends(get_state), result: StudyResult = Depends(study_result)):
    return _file(state, result, "discs.mha")


def _image(state: AppState, result: StudyResult, folder: str, index: int) -> Response:
    slices = result.findings.shape[0]
    if not 0 <= index < slices:
        raise HTTPException(404, f"slice {index} is outside the series (0..{slices - 1})")
    key = f"{result.prefix}/{folder}/{index:04d}.png"
    if not state.storage.exists(key) and result.job.origin == "node":
        add_page_images(state.storage, state.settings, state.series_key(result.job), result.prefix)  # first view
    try:
        data = state.storage.read_bytes(key)
    except NotFound:
        raise HTTPException(404, f"slice image {index} is missing") from None
    return Response(data, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})


@router.get("/{study}/slices/{index}.png", summary="One slice as an 8-bit PNG (series-wide window)",
            dependencies=[Depends(reader)], response_class=Response)
def slice_png(index: int, state: AppState = Depends(get_state), result: StudyResult = Depends(study_result)):
    return _image(state, result, "slices", index)


@router.get("/{study}/masks/{index}.png", summary="Disc mask overlay of one slice (RGBA PNG)",
            dependencies=[Depends(reader)], response_class=Response)
def mask_png(index: int, state: AppState = Depends(get_state), result: StudyResult = Depends(study_result)):
    return _image(state, result, "masks", index)
