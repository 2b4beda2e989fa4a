"""The storage interface: keyed blobs under one root, atomic writes. Local filesystem, or GCS (:mod:`.storage_gcs`).

Keys are ``/``-separated relative paths (``results/<study>/<version>/findings.json``). A write is all or
nothing: a reader sees either the previous object or the new one, never a partial file (local: temp file in
the same folder + fsync + rename + fsync of the folder; GCS: one object upload). Groups of objects are committed by
writing a marker object last (e.g. ``findings.json`` of a result), so readers check the marker, not the folder.
Two writers that must not both win use :meth:`Storage.write_if_absent` (create once: a secret, a model version's
files) or :meth:`Storage.update` (read-modify-write that no other update interleaves with: an alias). Local: a
hard link that fails if the name exists, and an ``flock``; GCS: generation preconditions.

The layout (DESIGN.md): ``inbox/``, ``studies/<StudyUID>/``, ``results/<StudyUID>/<model-version>/``,
``feedback/{corrections,accepted}/``, ``datasets/<version>/``, ``models/<name>/<version>/``.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

from pydantic import PlainValidator

_KEY = re.compile(r"^[A-Za-z0-9._=+\-]+(/[A-Za-z0-9._=+\-]+)*$")


class StorageError(RuntimeError):
    """The storage backend failed (disk full, permission, network...)."""


class NotFound(KeyError):
    """No object under that key."""


class Conflict(StorageError):
    """A precondition failed: the object was created or changed by someone else since it was read."""


def is_remote(location: Path | str) -> bool:
    return str(location).startswith("gs://")


def location(value: Path | str) -> Path | str:
    """A data location: ``gs://bucket/prefix`` stays a URL (as a ``Path`` it would collapse to ``gs:/bucket``),
    anything else is a local ``Path``."""
    return str(value) if is_remote(value) else Path(value)


# a setting or field holding a local folder or a gs:// URL (what :func:`storage_for` accepts)
Location = Annotated[Path | str, PlainValidator(location)]


def check_key(key: str) -> str:
    """A key is a relative path of safe names; no ``..``, no absolute paths, no empty parts."""
    if not isinstance(key, str) or not _KEY.match(key) or any(part in (".", "..") for part in key.split("/")):
        raise ValueError(f"invalid storage key {key!r}")
    return key


def safe_name(text: str) -> str:
    """Turn a UID, version label or login into one safe key component."""
    out = re.sub(r"[^A-Za-z0-9._=+\-]", "_", str(text)).strip("._") or "_"
    return out[:128]


class Storage(ABC):
    """What every backend offers. Implementations must make ``write_*`` atomic per object."""

    @abstractmethod
    def write_bytes(self, key: str, data: bytes) -> None: ...

    @abstractmethod
    def write_file(self, key: str, source: Path) -> None:
        """Copy a local file in as one object (atomically)."""

    @abstractmethod
    def read_bytes(self, key: str) -> bytes:
        """Raise :class:`NotFound` when absent."""

    @abstractmethod
    def write_if_absent(self, key: str, data: bytes) -> bool:
        """Create the object unless it exists; True when this call created it (a concurrent creator gets False)."""

    @abstractmethod
    def update(self, key: str, change: Callable[[bytes | None], bytes]) -> bytes:
        """Replace the object by ``change(current or None)`` with no other update in between; returns what was
        written. ``change`` may be called more than once (GCS retries when another writer got in first)."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def list(self, prefix: str) -> list[str]:
        """Every key under ``prefix`` (recursively), sorted."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove one object; absent is fine."""

    def delete_prefix(self, prefix: str) -> None:
        for key in self.list(prefix):
            self.delete(key)

    def download(self, prefix: str, dest: Path) -> list[Path]:
        """Copy every object under ``prefix`` into ``dest`` (keeping relative paths); returns the local files."""
        out = []
        for key in self.list(prefix):
            target = Path(dest) / key[len(prefix.rstrip("/")) + 1 :]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(self.read_bytes(key))
            out.append(target)
        return out

    def local_path(self, key: str) -> Path | None:
        """A path to read the object in place, for backends that have one (else None: use read_bytes/download)."""
        return None


class LocalStorage(Storage):
    """Objects are files under ``root``; writes go through a temp file in the target folder. Files are private
    (``mode`` 0600) unless the store is read by other users too (the model registry)."""

    def __init__(self, root: Path, mode: int = 0o600):
        self.root = Path(root).resolve()
        self.mode = mode
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def _atomic(self, key: str, fill, *, exclusive: bool = False) -> bool:
        """Write a temp file in the target folder, then rename it over the key (or, ``exclusive``, hard-link it
        to the key, which fails if the key exists: False)."""
        path = self._path(key)
        for attempt in range(3):  # a concurrent delete may prune the folder between mkdir and mkstemp
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
                break
            except FileNotFoundError:
                if attempt == 2:
                    raise StorageError(f"cannot write {key}: its folder keeps disappearing") from None
            except OSError as exc:
                raise StorageError(f"cannot write {key}: {exc.strerror or exc}") from exc
        try:
            os.fchmod(fd, self.mode)
            with os.fdopen(fd, "wb") as fh:
                fill(fh)
                fh.flush()
                os.fsync(fh.fileno())
            if exclusive:
                try:
                    os.link(tmp, path)
                except FileExistsError:
                    return False
                finally:
                    Path(tmp).unlink(missing_ok=True)
            else:
                os.replace(tmp, path)
            _fsync_dir(path.parent)
            return True
        except BaseException as exc:
            Path(tmp).unlink(missing_ok=True)
            if isinstance(exc, OSError):
                raise StorageError(f"cannot write {key}: {exc.strerror or exc}") from exc
            raise

    def write_bytes(self, key: str, data: bytes) -> None:
        self._atomic(key, lambda fh: fh.write(data))

    def write_file(self, key: str, source: Path) -> None:
        def fill(fh):
            with open(source, "rb") as src:
                shutil.copyfileobj(src, fh, 1 << 20)

        self._atomic(key, fill)

    def write_if_absent(self, key: str, data: bytes) -> bool:
        return self._atomic(key, lambda fh: fh.write(data), exclusive=True)

    def update(self, key: str, change: Callable[[bytes | None], bytes]) -> bytes:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path.parent / f".{path.name}.lock", "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
                try:
                    current = path.read_bytes()
                except FileNotFoundError:
                    current = None
                data = change(current)
                self.write_bytes(key, data)
                return data
        except OSError as exc:
            raise StorageError(f"cannot update {key}: {exc.strerror or exc}") from exc

    def read_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise NotFound(key) from exc

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str) -> list[str]:
        base = self._path(prefix.rstrip("/"))
        if not base.is_dir():
            return []
        return sorted(
            p.relative_to(self.root).as_posix()
            for p in base.rglob("*")
            if p.is_file() and not p.name.startswith(".")
        )

    def delete(self, key: str) -> None:
        path = self._path(key)
        path.unlink(missing_ok=True)
        # prune empty folders up to the root so deleted groups leave nothing behind
        parent = path.parent
        while parent != self.root and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()
            parent = parent.parent

    def local_path(self, key: str) -> Path | None:
        path = self._path(key)
        return path if path.is_file() else None


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def storage_for(location: Path | str, mode: int = 0o600) -> Storage:
    """The backend for a data location: ``gs://bucket/prefix`` is GCS, anything else a local folder (whose new
    files get ``mode``; GCS access is the bucket's IAM)."""
    text = str(location)
    if is_remote(text):
        from ai_service.storage_gcs import GCSStorage

        return GCSStorage(text)
    return LocalStorage(Path(text), mode)
