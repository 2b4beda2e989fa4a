"""The REST API and web page of the AI service (FastAPI): ``create_app(settings, engine=None)``."""

from ai_service.api.app import create_app

__all__ = ["create_app"]
