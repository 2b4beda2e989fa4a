"""A request body received as it streams, under a size limit: the one receiver behind every door that takes files
over HTTP (web upload, STOW-RS), each writing the parts into its own :class:`Sink`.

The limit is checked before anything is read (``Content-Length``) and again on the bytes as they arrive (a chunked
body has no length). Both count the whole body, multipart framing included, so that parts which are all framing
(no payload) cannot pile up without bound; the body may pass the limit by :data:`FRAMING` bytes, so a payload of
exactly the limit still fits. A multipart body must end with its closing boundary: a body cut short would leave its
last part truncated.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from python_multipart.multipart import MultipartParser
from starlette.requests import Request

FRAMING = 64 * 1024  # bytes of boundaries and part headers allowed over the limit


class Refused(Exception):
    """The request cannot be accepted; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Limit:
    """How large a body may be, and how a refusal names it (``what``: "the upload"; ``setting``: its env var)."""

    max_mib: int
    what: str
    setting: str

    @property
    def max_bytes(self) -> int:
        return self.max_mib * 1024 * 1024 + FRAMING

    def exceeded(self, size: int | None = None) -> Refused:
        known = f" ({size / 2**20:.1f} MiB)" if size is not None else ""
        return Refused(413, f"{self.what}{known} exceeds the limit of {self.max_mib} MiB ({self.setting})")


class Sink(Protocol):
    """Where a multipart body's parts go, one after another."""

    def begin(self, headers: dict[str, bytes]) -> None:
        """A part starts; ``headers``: its header names in lower case, their raw values."""

    def write(self, data: bytes) -> None: ...

    def end(self) -> None: ...


def body(request: Request, limit: Limit) -> AsyncIterator[bytes]:
    """The request body chunk by chunk; :class:`Refused` (413) at once when ``Content-Length`` is over the limit,
    else as soon as the bytes received pass it."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit.max_bytes:
        raise limit.exceeded(int(length))
    return _counted(request.stream(), limit)


async def _counted(chunks: AsyncIterator[bytes], limit: Limit) -> AsyncIterator[bytes]:
    received = 0
    async for chunk in chunks:
        received += len(chunk)
        if received > limit.max_bytes:
            raise limit.exceeded()
        yield chunk


async def receive_multipart(chunks: AsyncIterator[bytes], boundary: bytes, sink: Sink) -> None:
    """Parse a multipart body into ``sink``. A :class:`Refused` from the chunks or the sink passes through; any
    other failure of the body is a 400."""
    headers: dict[str, bytes] = {}
    name, value = bytearray(), bytearray()
    ended = []

    def on_header_end():
        headers[name.decode("latin-1").lower()] = bytes(value).strip()
        name.clear()
        value.clear()

    parser = MultipartParser(boundary, {
        "on_part_begin": headers.clear,
        "on_header_field": lambda data, start, end: name.extend(data[start:end]),
        "on_header_value": lambda data, start, end: value.extend(data[start:end]),
        "on_header_end": on_header_end,
        "on_headers_finished": lambda: sink.begin(dict(headers)),
        "on_part_data": lambda data, start, end: sink.write(bytes(data[start:end])),
        "on_part_end": sink.end,
        "on_end": lambda: ended.append(True),
    })
    try:
        async for chunk in chunks:
            parser.write(chunk)
    except Refused:
        raise
    except Exception as exc:  # noqa: BLE001 - python-multipart raises its own parse errors
        raise Refused(400, f"malformed multipart body ({exc})") from None
    if not ended:
        raise Refused(400, "the multipart body ended before its closing boundary")
