"""FastAPI dependencies: the app state, the authenticated principal, role checks."""

from __future__ import annotations

from fastapi import Depends, Header, HTTPException, Request

from ai_service.api.auth import Principal, token_of
from ai_service.api.state import AppState


def get_state(request: Request) -> AppState:
    return request.app.state.ldh


def principal(
    request: Request,
    authorization: str | None = Header(None, include_in_schema=False),
    x_api_key: str | None = Header(None, include_in_schema=False),
) -> Principal:
    state: AppState = request.app.state.ldh
    token = token_of(authorization, x_api_key)
    who = state.auth.authenticate(token)
    if who is None:
        state.metrics.errors.labels("auth").inc()
        detail = "missing credential: send 'Authorization: Bearer <token>' or 'X-API-Key: <token>'" if not token \
            else "unknown or revoked credential"
        raise HTTPException(401, detail, headers={"WWW-Authenticate": "Bearer"})
    return who


def _needs(who: Principal, state: AppState, role: str, what: str) -> Principal:
    if not who.can(role):
        state.metrics.errors.labels("forbidden").inc()
        raise HTTPException(403, f"credential of {who.login} has role {who.role}; this needs role {what}")
    return who


def reader(who: Principal = Depends(principal), state: AppState = Depends(get_state)) -> Principal:
    return _needs(who, state, "viewer", "viewer or reviewer")


def reviewer(who: Principal = Depends(principal), state: AppState = Depends(get_state)) -> Principal:
    return _needs(who, state, "reviewer", "reviewer")


def sender(who: Principal = Depends(principal), state: AppState = Depends(get_state)) -> Principal:
    return _needs(who, state, "sender", "sender or reviewer")
