"""``GET /api/jobs/{id}``: state, stage, progress and error of one analysis job."""

from fastapi import APIRouter, Depends, HTTPException

from ai_service.api.deps import get_state, reader
from ai_service.api.state import AppState

router = APIRouter(prefix="/api/jobs", tags=["jobs"], dependencies=[Depends(reader)])


@router.get("/{job_id}", summary="State of one analysis job")
def get_job(job_id: str, state: AppState = Depends(get_state)) -> dict:
    job = state.jobs.get(job_id)
    if job is None:
        raise HTTPException(404, f"job {job_id} is unknown")
    return job.to_dict()
