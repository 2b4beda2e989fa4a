"""Credentials: API keys / bearer tokens from the settings, each naming a reviewer and a role.

A request presents its token as ``Authorization: Bearer <token>`` or ``X-API-Key: <token>``. Tokens are kept
only as SHA-256 digests in memory and compared in constant time. Roles: ``reviewer`` (read, upload, feedback,
STOW-RS), ``viewer`` (read only) and ``sender`` (STOW-RS only: a modality or PACS that pushes studies need not
read results). With ``LDH_API_AUTH=off`` (local use only) every request is the local reviewer.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from pathlib import Path

from ai_service.config import Settings

ROLES = ("reviewer", "viewer", "sender")


class AuthConfigError(ValueError):
    """The credential settings are unusable (message says which and why)."""


@dataclass(frozen=True)
class Principal:
    login: str
    name: str  # DICOM person name for the reviewed SR
    role: str
    organization: str | None = None
    credential: str = "local"  # label of the credential that authenticated (never the secret)

    def can(self, role: str) -> bool:
        """A reviewer may do what every role may; the others only their own (read = ``viewer``)."""
        return self.role == "reviewer" or role == self.role


def person_name(name: str) -> str:
    """A DICOM PN: a plain login becomes a family name (``jdoe`` -> ``jdoe^``); ``Doe^Jane`` stays."""
    return name if "^" in name else f"{name}^"


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


class Authenticator:
    def __init__(self, settings: Settings):
        self.enabled = settings.api_auth != "off"
        self.local = Principal(login="local", name=person_name(settings.api_local_reviewer), role="reviewer",
                               organization=settings.institution_name, credential="auth-off")
        self._keys: list[tuple[bytes, Principal]] = []
        for i, entry in enumerate(e.strip() for e in settings.api_keys.split(",") if e.strip()):
            parts = entry.split(":")
            if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
                raise AuthConfigError(f"LDH_API_KEYS entry {i + 1} must be TOKEN:LOGIN[:ROLE]")
            role = parts[2] if len(parts) == 3 else "reviewer"
            self._add(_digest(parts[0]), parts[1], person_name(parts[1]), role, None, f"LDH_API_KEYS[{i + 1}]")
        if settings.api_keys_file is not None:
            self._load_file(Path(settings.api_keys_file))
        if self.enabled and not self._keys:
            raise AuthConfigError(
                "LDH_API_AUTH=required but no credential is configured: set LDH_API_KEYS or LDH_API_KEYS_FILE, "
                "or LDH_API_AUTH=off for local use only"
            )

    def _add(self, digest: bytes, login: str, name: str, role: str, org: str | None, label: str) -> None:
        if role not in ROLES:
            raise AuthConfigError(f"{label}: role {role!r} is not one of {', '.join(ROLES)}")
        self._keys.append((digest, Principal(login=login, name=name, role=role, organization=org, credential=label)))

    def _load_file(self, path: Path) -> None:
        try:
            entries = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise AuthConfigError(f"LDH_API_KEYS_FILE {path} is not a readable JSON list ({exc})") from exc
        if not isinstance(entries, list):
            raise AuthConfigError(f"LDH_API_KEYS_FILE {path} must hold a JSON list")
        for i, e in enumerate(entries):
            label = f"{path.name}[{i + 1}]"
            if not isinstance(e, dict) or not e.get("login") or not (e.get("token") or e.get("token_sha256")):
                raise AuthConfigError(f"{label} needs login and token (or token_sha256)")
            try:
                digest = bytes.fromhex(e["token_sha256"]) if e.get("token_sha256") else _digest(e["token"])
            except ValueError as exc:
                raise AuthConfigError(f"{label}: token_sha256 is not hex") from exc
            self._add(digest, e["login"], person_name(e.get("name") or e["login"]), e.get("role", "reviewer"),
                      e.get("organization"), label)

    def authenticate(self, token: str | None) -> Principal | None:
        if not self.enabled:
            return self.local
        if not token:
            return None
        digest = _digest(token)
        found = None
        for known, principal in self._keys:  # no early exit: the time does not depend on which key matched
            if hmac.compare_digest(known, digest):
                found = principal
        return found


def token_of(authorization: str | None, api_key: str | None) -> str | None:
    if api_key:
        return api_key.strip()
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return None
