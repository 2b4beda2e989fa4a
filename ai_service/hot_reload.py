"""Hot reload: notice a moved ``production`` alias and swap in a new engine without failing in-flight requests.

A background thread polls the registry (two small ``aliases.json`` reads) every ``LDH_PIPELINE_HOT_RELOAD_S``.
When the configured aliases resolve to other versions than the engine in use, a new engine is built and warmed
up *off* the request path, then handed to ``swap`` (a reference assignment): a job that already took the old
engine finishes on it, the next one gets the new one. A new engine that fails to load is logged and the old
one kept; the check repeats on the next poll.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from ai_service.config import Settings
from ai_service.findings import ModelVersions
from ai_service.registry import CLS_MODEL, SEG_MODEL, ModelRegistry

log = logging.getLogger(__name__)


class EngineReloader:
    def __init__(self, settings: Settings, current: Callable[[], ModelVersions], swap: Callable[[object], None],
                 interval_s: float):
        self.settings = settings
        self.current = current
        self.swap = swap
        self.interval_s = interval_s
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def wanted(self) -> ModelVersions:
        registry = ModelRegistry(self.settings.model_store)
        return ModelVersions(registry.version_of(SEG_MODEL, self.settings.seg_model),
                             registry.version_of(CLS_MODEL, self.settings.cls_model))

    def check_once(self) -> bool:
        """Reload when the aliases moved; True when a new engine was swapped in."""
        from ai_service.engine import InferenceEngine

        try:
            wanted = self.wanted()
            if wanted == self.current():
                return False
            log.info("production alias moved; loading new models", extra={"models": wanted.label})
            engine = InferenceEngine(self.settings)
            engine.warm_up()
            self.swap(engine)
            self.last_error = None
            log.info("hot reload done", extra={"models": engine.versions.label})
            return True
        except Exception as exc:  # noqa: BLE001 - keep serving with the old engine
            self.last_error = f"hot reload failed, old models kept: {exc}"
            log.exception("hot reload failed; keeping the models in use")
            return False

    def start(self) -> "EngineReloader":
        self._thread = threading.Thread(target=self._loop, name="ldh-hot-reload", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.check_once()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
