"""The upload / review web page: static HTML, JS and CSS shipped in the package (no CDN at run time)."""

from pathlib import Path

from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse

from ai_service.api.deps import get_state
from ai_service.api.state import AppState

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
router = APIRouter(tags=["web"])


@router.get("/", include_in_schema=False)
def index() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


@router.get("/api/config", summary="What the web page needs to know before signing in")
def config(state: AppState = Depends(get_state)) -> dict:
    s = state.settings
    return {
        "auth_required": state.auth.enabled,
        "max_upload_mb": s.api_max_upload_mb,
        "max_upload_files": s.api_max_upload_files,
        "default_pixel_spacing_mm": s.default_pixel_spacing_mm,
        "default_slice_spacing_mm": s.default_slice_spacing_mm,
        "levels": ["L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1"],
        "models": state.versions.label,
    }
