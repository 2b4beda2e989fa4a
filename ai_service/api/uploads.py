"""Receive an HTTP upload into a private staging folder, streaming, with size and file-count limits.

Two request shapes:

- ``multipart/form-data``: any number of file parts (field name free, usually ``files``) plus optional text
  fields (``pixel_spacing_mm``, ``slice_spacing_mm``); parsed incrementally, each part written straight to disk;
- a raw body (``application/octet-stream``, ``application/zip``, ...) holding one file, named by the
  ``filename`` query parameter or an ``X-Filename`` header.

The body is received by :mod:`ai_service.api.body` (413 over the limit, 400 malformed); the caller deletes the
staging folder.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from python_multipart.multipart import parse_options_header
from starlette.requests import Request

from ai_service.api.body import Limit, Refused, body, receive_multipart

MAX_FIELD_BYTES = 1024
MAX_FILENAME = 200


@dataclass
class Staged:
    folder: Path
    files: list[Path] = field(default_factory=list)
    fields: dict[str, str] = field(default_factory=dict)
    total_bytes: int = 0


def clean_filename(name: str, index: int) -> str:
    """The base name with unsafe characters replaced (digits kept: slices are ordered by the number in names)."""
    base = re.split(r"[\\/]", name or "")[-1].strip()
    base = re.sub(r"[^A-Za-z0-9._+\-]", "_", base).lstrip(".")[:MAX_FILENAME]
    return base or f"file{index:05d}"


class _Staging:
    """The upload's :class:`~ai_service.api.body.Sink`: each file part into its own file, text fields kept."""

    def __init__(self, staged: Staged, max_files: int):
        self.staged = staged
        self.max_files = max_files
        self._fh = None
        self._field: str | None = None
        self._value = bytearray()
        self._names: set[str] = set()

    def begin(self, headers: dict[str, bytes]) -> None:
        _, disp = parse_options_header(headers.get("content-disposition", b""))
        filename = disp.get(b"filename")
        if filename is not None:
            self.open_file(filename.decode("utf-8", "replace"))
        else:
            self._field = disp.get(b"name", b"").decode("utf-8", "replace")
            self._value = bytearray()

    def open_file(self, filename: str) -> None:
        if len(self.staged.files) >= self.max_files:
            raise Refused(413, f"the upload holds more than {self.max_files} files (LDH_API_MAX_UPLOAD_FILES)")
        name = clean_filename(filename, len(self.staged.files))
        if name in self._names:
            stem, dot, ext = name.partition(".")
            name = f"{stem}__{len(self.staged.files)}{dot}{ext}"
        self._names.add(name)
        path = self.staged.folder / name
        self._fh = open(path, "wb")  # noqa: SIM115 - closed in end
        self.staged.files.append(path)

    def write(self, data: bytes) -> None:
        self.staged.total_bytes += len(data)
        if self._fh is not None:
            self._fh.write(data)
        elif self._field is not None:
            self._value += data
            if len(self._value) > MAX_FIELD_BYTES:
                raise Refused(413, f"form field {self._field!r} is longer than {MAX_FIELD_BYTES} bytes")

    def end(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        if self._field is not None:
            self.staged.fields[self._field] = self._value.decode("utf-8", "replace").strip()
            self._field = None
            self._value = bytearray()


async def receive(request: Request, folder: Path, max_mib: int, max_files: int) -> Staged:
    """Stream the request body into ``folder``; raise :class:`Refused` on a limit or a malformed body."""
    folder.mkdir(parents=True, exist_ok=True)
    staged = Staged(folder)
    chunks = body(request, Limit(max_mib, "the upload", "LDH_API_MAX_UPLOAD_MB"))
    sink = _Staging(staged, max_files)
    ctype, params = parse_options_header(request.headers.get("content-type", ""))
    try:
        if ctype == b"multipart/form-data":
            if not params.get(b"boundary"):
                raise Refused(400, "multipart upload without a boundary")
            await receive_multipart(chunks, params[b"boundary"], sink)
        else:
            sink.open_file(request.query_params.get("filename") or request.headers.get("x-filename") or "upload.bin")
            async for chunk in chunks:
                sink.write(chunk)
    finally:
        sink.end()
    return staged
