"""``/healthz`` (the process answers), ``/readyz`` (models loaded, worker alive, storage writable), ``/metrics``."""

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response

from ai_service.api.deps import get_state
from ai_service.api.metrics import CONTENT_TYPE
from ai_service.api.state import AppState

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness")
def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: models loaded, worker running, storage writable")
def readyz(state: AppState = Depends(get_state)):
    problems = []
    if state.engine is None:
        problems.append(state.engine_error or "models are still loading")
    if not state.worker.alive:
        problems.append("the analysis worker is not running")
    try:
        state.storage.write_bytes("health/ready", b"ok\n")
    except Exception as exc:  # noqa: BLE001
        problems.append(f"storage is not writable: {exc}")
    body = {"status": "ready" if not problems else "not ready", "problems": problems,
            "models": state.versions.label}
    return JSONResponse(body, status_code=200 if not problems else 503)


@router.get("/metrics", summary="Prometheus metrics")
def metrics(state: AppState = Depends(get_state)) -> Response:
    counts = state.jobs.counts()
    state.metrics.queue_depth.set(counts["queued"])
    state.metrics.jobs_running.set(counts["running"])
    return Response(state.metrics.render(), media_type=CONTENT_TYPE)
