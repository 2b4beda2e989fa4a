"""Run the API app with uvicorn in a background thread (``ldh serve`` beside the DICOM node; browser tests)."""

from __future__ import annotations

import logging
import threading
import time

from ai_service.config import Settings


class _PlainRecords(logging.Filter):
    """uvicorn adds a ``color_message`` extra that our key=value log lines would print; drop it."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.__dict__.pop("color_message", None)
        return True


class ApiServer:
    def __init__(self, settings: Settings, engine=None, host: str | None = None, port: int | None = None):
        import uvicorn

        from ai_service.api import create_app

        self.app = create_app(settings, engine=engine)
        self.host = host or settings.api_host
        config = uvicorn.Config(self.app, host=self.host, port=settings.api_port if port is None else port,
                                log_level=settings.log_level.lower(), log_config=None, access_log=False,
                                timeout_keep_alive=settings.api_keepalive_s)
        self._server = uvicorn.Server(config)
        for name in ("uvicorn", "uvicorn.error"):
            logging.getLogger(name).addFilter(_PlainRecords())
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        sockets = [s for server in getattr(self._server, "servers", []) for s in server.sockets]
        return sockets[0].getsockname()[1] if sockets else self._server.config.port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def start(self, timeout: float = 30.0) -> "ApiServer":
        self._thread = threading.Thread(target=self._server.run, name="ldh-api", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError(f"the API could not start on {self.host}:{self._server.config.port} "
                                   "(port in use? see the log above)")
            if time.monotonic() > deadline:
                raise RuntimeError("the API did not start in time")
            time.sleep(0.05)
        from ai_service.api.routers.viewer import announce

        announce(self.app.state.ldh.settings, self.url)
        return self

    def stop(self, timeout: float = 15.0) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
