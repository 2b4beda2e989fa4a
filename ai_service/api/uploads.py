"""Receive an HTTP upload into a private staging folder, streaming, with size and file-count limits.

Two request shapes:

- ``multipart/form-data``: any number of file parts (field name free, usually ``files``) plus optional text
  fields (``pixel_spacing_mm``, ``slice_spacing_mm``); parsed incrementally, each part written straight to disk;
- a raw body (``application/octet-stream``, ``application/zip``, ...) holding one file, named by the
  ``filename`` query parameter or an ``X-Filename`` header.

The request is refused (413) as soon as the byte count passes the limit; the caller deletes the staging folder.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

MAX_FIELD_BYTES = 1024
MAX_FILENAME = 200


class UploadRefused(Exception):
    """The request cannot be accepted; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


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


class _Receiver:
    def __init__(self, staged: Staged, max_bytes: int, max_files: int, max_mib: int):
        self.staged = staged
        self.max_bytes = max_bytes
        self.max_files = max_files
        self.max_mib = max_mib
        self._fh = None
        self._field: str | None = None
        self._value = bytearray()
        self._names: set[str] = set()

    def count(self, n: int) -> None:
        self.staged.total_bytes += n
        if self.staged.total_bytes > self.max_bytes:
            raise UploadRefused(413, f"the upload exceeds the limit of {self.max_mib} MiB (LDH_API_MAX_UPLOAD_MB)")

    def open_file(self, filename: str) -> None:
        if len(self.staged.files) >= self.max_files:
            raise UploadRefused(
                413, f"the upload holds more than {self.max_files} files (LDH_API_MAX_UPLOAD_FILES)"
            )
        name = clean_filename(filename, len(self.staged.files))
        if name in self._names:
            stem, dot, ext = name.partition(".")
            name = f"{stem}__{len(self.staged.files)}{dot}{ext}"
        self._names.add(name)
        path = self.staged.folder / name
        self._fh = open(path, "wb")  # noqa: SIM115 - closed in close_file
        self.staged.files.append(path)

    def write(self, data: bytes) -> None:
        self.count(len(data))
        if self._fh is not None:
            self._fh.write(data)
        elif self._field is not None:
            self._value += data
            if len(self._value) > MAX_FIELD_BYTES:
                raise UploadRefused(413, f"form field {self._field!r} is longer than {MAX_FIELD_BYTES} bytes")

    def close_file(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        if self._field is not None:
            self.staged.fields[self._field] = self._value.decode("utf-8", "replace").strip()
            self._field = None
            self._value = bytearray()

    def begin_field(self, name: str) -> None:
        self._field = name
        self._value = bytearray()


async def receive(request: Request, folder: Path, max_mib: int, max_files: int) -> Staged:
    """Stream the request body into ``folder``; raise :class:`UploadRefused` on a limit or a malformed body."""
    folder.mkdir(parents=True, exist_ok=True)
    staged = Staged(folder)
    max_bytes = max_mib * 1024 * 1024
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > max_bytes + 64 * 1024:
        raise UploadRefused(413, f"the upload ({int(length) / 2**20:.1f} MiB) exceeds the limit of {max_mib} MiB "
                                 "(LDH_API_MAX_UPLOAD_MB)")
    rx = _Receiver(staged, max_bytes, max_files, max_mib)
    ctype, params = parse_options_header(request.headers.get("content-type", ""))
    try:
        if ctype == b"multipart/form-data":
            await _multipart(request, params, rx)
        else:
            name = request.query_params.get("filename") or request.headers.get("x-filename") or "upload.bin"
            rx.open_file(name)
            async for chunk in request.stream():
                rx.write(chunk)
            rx.close_file()
    finally:
        rx.close_file()
    return staged


async def _multipart(request: Request, params: dict, rx: _Receiver) -> None:
    boundary = params.get(b"boundary")
    if not boundary:
        raise UploadRefused(400, "multipart upload without a boundary")
    headers: dict[str, str] = {}
    header_field = bytearray()
    header_value = bytearray()

    def on_part_begin():
        headers.clear()

    def on_header_field(data, start, end):
        header_field.extend(data[start:end])

    def on_header_value(data, start, end):
        header_value.extend(data[start:end])

    def on_header_end():
        headers[header_field.decode("latin-1").lower()] = header_value.decode("utf-8", "replace")
        header_field.clear()
        header_value.clear()

    def on_headers_finished():
        _, disp = parse_options_header(headers.get("content-disposition", ""))
        filename = disp.get(b"filename")
        if filename is not None:
            rx.open_file(filename.decode("utf-8", "replace"))
        else:
            rx.begin_field(disp.get(b"name", b"").decode("utf-8", "replace"))

    def on_part_data(data, start, end):
        rx.write(bytes(data[start:end]))

    def on_part_end():
        rx.close_file()

    parser = MultipartParser(boundary, {
        "on_part_begin": on_part_begin, "on_header_field": on_header_field, "on_header_value": on_header_value,
        "on_header_end": on_header_end, "on_headers_finished": on_headers_finished, "on_part_data": on_part_data,
        "on_part_end": on_part_end,
    })
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    except UploadRefused:
        raise
    except Exception as exc:  # noqa: BLE001 - python-multipart raises its own parse errors
        raise UploadRefused(400, f"malformed multipart body ({exc})") from exc
