"""``create_app(settings, engine=None)``: the FastAPI app (REST API under /api, web page at /, OpenAPI at /docs)."""

from __future__ import annotations

import logging
import time
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from ai_service import __version__
from ai_service.api.routers import dicomweb, feedback, health, jobs, models, studies, viewer, web
from ai_service.api.state import AppState
from ai_service.config import Settings
from ai_service.engine import InferenceEngine
from ai_service.storage import Storage

log = logging.getLogger(__name__)

DESCRIPTION = (
    "LDH Assist: lumbar disc herniation AI beside your PACS. Upload a sagittal lumbar series, get one box per disc "
    "with P(herniation), correct or accept it. Research software trained on synthetic phantoms only; not for "
    "clinical use."
)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        parts.append(f"{where}: {err.get('msg')}" if where else str(err.get("msg")))
    return "; ".join(parts) or "invalid request"


def create_app(settings: Settings, engine: InferenceEngine | None = None, storage: Storage | None = None) -> FastAPI:
    """The app. ``engine``: a loaded :class:`InferenceEngine` to share (else one is loaded in the background)."""
    state = AppState(settings, engine=engine, storage=storage)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state.start()
        try:
            yield
        finally:
            state.stop()

    # /docs from the packaged Swagger UI (no CDN: a hospital network may reach nothing outside)
    app = FastAPI(title="LDH Assist API", version=__version__, description=DESCRIPTION, lifespan=lifespan,
                  docs_url=None, redoc_url=None)
    app.state.ldh = state
    if settings.api_cors_origin_list:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.api_cors_origin_list,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type", "X-Filename"],
            max_age=600,
        )

    @app.middleware("http")
    async def count_requests(request: Request, call_next):
        t0 = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        state.metrics.http_requests.labels(request.method, path, str(response.status_code)).inc()
        state.metrics.http_seconds.labels(path).observe(time.perf_counter() - t0)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        state.metrics.errors.labels("validation").inc()
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")} for e in exc.errors()]
        return JSONResponse({"detail": _validation_message(exc), "errors": errors}, status_code=422)

    for module in (studies, jobs, feedback, models, dicomweb, health, web, viewer):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=web.STATIC_DIR), name="static")
    _offline_docs(app)
    return app


def _offline_docs(app: FastAPI) -> None:
    import swagger_ui_bundle
    from fastapi.openapi.docs import get_swagger_ui_html

    app.mount("/docs-static", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="docs-static")

    @app.get("/docs", include_in_schema=False)
    def docs():
        return get_swagger_ui_html(openapi_url=app.openapi_url, title=f"{app.title} - docs",
                                   swagger_js_url="/docs-static/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-static/swagger-ui.css",
                                   swagger_favicon_url="/docs-static/favicon-32x32.png")
