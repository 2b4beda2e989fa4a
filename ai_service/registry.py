"""Model registry: ``<root>/<name>/<version>/{card.json, model.keras, model.onnx}`` + ``<root>/<name>/aliases.json``,
in a local folder or under ``gs://bucket/prefix`` (:mod:`ai_service.storage`: on Vertex AI every pipeline step runs
on its own machine, so the store they share is a bucket).

Versions are immutable; an alias (``production``) points at one. A version is published file by file, each with
write-if-absent, and its card last: no file of a version is ever overwritten, two publishers of one version name
cannot mix their files (the second loses on the first file), and a version without its card (half-written) is
neither listed nor resolved. The aliases are one small object changed by read-modify-write with a precondition, so
two promotions that read the same production cannot both replace it. Serving and training read files on disk: a
local store is read in place; a version of a remote store is downloaded once into a local cache (it never changes)
and read there. The shipped store inside the package holds the weights a fresh clone uses; ``LDH_MODEL_STORE``
points at another.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ai_service.errors import ModelError
from ai_service.storage import NotFound, is_remote, location, storage_for

SEG_MODEL = "disc-seg"
CLS_MODEL = "herniation-cls"
CARD = "card.json"
MODEL_FILE = "model.keras"
FILE_MODE = 0o644  # cards, models and aliases are read by the service's user too
_UNCHECKED = object()


class AliasMoved(ModelError):
    """Someone else moved the alias since it was read; nothing was changed."""


@dataclass(frozen=True)
class ModelRef:
    name: str
    version: str
    path: Path  # a local folder holding the version's files
    card: dict[str, Any]

    @property
    def model_file(self) -> Path:
        return self.path / MODEL_FILE


def default_cache(root: str) -> Path:
    """Where versions of a remote store are kept on this machine: one folder per store."""
    return Path(tempfile.gettempdir()) / "ldh-model-cache" / root.removeprefix("gs://").strip("/")


class ModelRegistry:
    def __init__(self, root: Path | str, cache: Path | None = None):
        self.root = location(root)
        self.storage = storage_for(self.root, mode=FILE_MODE)
        self.cache = cache or (default_cache(self.root) if is_remote(self.root) else None)

    def aliases(self, name: str) -> dict[str, str]:
        try:
            return json.loads(self.storage.read_bytes(f"{name}/aliases.json"))
        except NotFound:
            return {}

    def version_of(self, name: str, version_or_alias: str = "production") -> str:
        """The version an alias points at (a version names itself); reads only the aliases."""
        return self.aliases(name).get(version_or_alias, version_or_alias)

    def versions(self, name: str) -> list[str]:
        """Published versions: those whose card is there."""
        return sorted(key.split("/")[1] for key in self.storage.list(name)
                      if key.count("/") == 2 and key.endswith(f"/{CARD}") and not key.split("/")[1].startswith("."))

    def check(self, name: str, version_or_alias: str = "production") -> str:
        """The version ``version_or_alias`` names, refused unless published (card and model there)."""
        version = self.version_of(name, version_or_alias)
        if not all(self.storage.exists(f"{name}/{version}/{f}") for f in (CARD, MODEL_FILE)):
            known = ", ".join(self.versions(name)) or "none"
            raise ModelError(f"model {name}:{version_or_alias} not found in {self.root} (versions: {known})")
        return version

    def resolve(self, name: str, version_or_alias: str = "production") -> ModelRef:
        version = self.check(name, version_or_alias)
        path = self._local_folder(name, version)
        return ModelRef(name, version, path, json.loads((path / CARD).read_text()))

    def _local_folder(self, name: str, version: str) -> Path:
        here = self.storage.local_path(f"{name}/{version}/{CARD}")
        if here is not None:
            return here.parent
        target = self.cache / name / version
        if not (target / CARD).exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{version}."))
            try:
                self.storage.download(f"{name}/{version}", staging)
                try:
                    staging.rename(target)  # whole or not at all
                except OSError:
                    if not (target / CARD).exists():  # not another process caching it first
                        raise
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        return target

    def publish(self, name: str, version: str, folder: Path) -> ModelRef:
        """Add a saved version (``folder`` with its card, model files...) as ``name:version``, card last."""
        folder = Path(folder)
        files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != CARD) + [folder / CARD]
        for path in files:
            if not self.storage.write_if_absent(f"{name}/{version}/{path.relative_to(folder).as_posix()}",
                                                path.read_bytes()):
                raise FileExistsError(f"model version {name}:{version} already exists; versions are immutable")
        return self.resolve(name, version)

    def set_alias(self, name: str, alias: str, version: str, *, expected: str | None | object = _UNCHECKED) -> None:
        """Point ``alias`` at ``version`` (which must be published). With ``expected``, only if the alias still
        points there (None: not set yet), else :class:`AliasMoved`."""
        self.check(name, version)

        def change(current: bytes | None) -> bytes:
            aliases = json.loads(current) if current else {}
            if expected is not _UNCHECKED and aliases.get(alias) != expected:
                raise AliasMoved(f"{name}:{alias} was moved to {aliases.get(alias)} meanwhile (expected {expected}); "
                                 "nothing changed")
            return (json.dumps(aliases | {alias: version}, indent=2, sort_keys=True) + "\n").encode()

        self.storage.update(f"{name}/aliases.json", change)


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temp file + fsync + rename so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; cards and aliases are read by other service users
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
