"""The one streaming body receiver behind the upload and STOW-RS doors (ai_service.api.body): parts arrive whole
whatever the chunking, the size limit holds before reading and while streaming, and a bad body is a 400. Bodies
are encoded by httpx's real multipart encoder and fed through a real Starlette request."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from starlette.requests import Request

from ai_service.api.body import Limit, Refused, body, receive_multipart

LIMIT = Limit(1, "the test body", "LDH_TEST_MB")


class Collected:
    """A sink that keeps every part (headers and bytes) in memory."""

    def __init__(self):
        self.parts: list[tuple[dict[str, bytes], bytearray]] = []
        self.ended = 0

    def begin(self, headers):
        self.parts.append((headers, bytearray()))

    def write(self, data):
        self.parts[-1][1].extend(data)

    def end(self):
        self.ended += 1


def form(files, data=None) -> tuple[bytes, bytes]:
    """(body, boundary) of a real multipart/form-data request."""
    request = httpx.Request("POST", "http://127.0.0.1/", files=files, data=data)
    boundary = request.headers["content-type"].split("boundary=", 1)[1].encode()
    return request.read(), boundary


def starlette_request(chunks: list[bytes], length: int | None) -> tuple[Request, list[int]]:
    """A Starlette request whose body arrives in ``chunks``; the list returned counts the chunks read."""
    pulled = []
    headers = [(b"content-length", str(length).encode())] if length is not None else []

    async def receive():
        pulled.append(1)
        i = len(pulled) - 1
        return {"type": "http.request", "body": chunks[i] if i < len(chunks) else b"",
                "more_body": i + 1 < len(chunks)}

    return Request({"type": "http", "method": "POST", "headers": headers}, receive), pulled


def receive(chunks: list[bytes], boundary: bytes, sink, length: int | None = None):
    async def run():
        request, pulled = starlette_request(chunks, length)
        await receive_multipart(body(request, LIMIT), boundary, sink)
        return pulled

    return asyncio.run(run())


def split(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize("chunk", [1, 7, 4096, 1 << 20])
def test_parts_arrive_whole_in_order_with_their_headers_whatever_the_chunking(chunk):
    one, two = bytes(range(256)) * 40, b"\r\n--not-a-boundary\r\n" * 3
    data, boundary = form([("files", ("一.mha", one, "application/octet-stream")),
                           ("files", ("b.png", two, "image/png"))], data={"pixel_spacing_mm": "0.5"})
    sink = Collected()
    receive(split(data, chunk), boundary, sink, length=len(data))
    assert [bytes(p) for _, p in sink.parts] == [b"0.5", one, two] and sink.ended == 3
    headers = [h for h, _ in sink.parts]
    assert 'filename="一.mha"'.encode() in headers[1]["content-disposition"]  # UTF-8 bytes kept as sent
    assert headers[2]["content-type"] == b"image/png"


def test_a_payload_of_exactly_the_limit_fits_with_its_framing():
    payload = b"\0" * (1024 * 1024)
    data, boundary = form([("files", ("big.bin", payload, "application/octet-stream"))])
    assert len(data) > 1024 * 1024
    sink = Collected()
    receive(split(data, 65536), boundary, sink)
    assert bytes(sink.parts[0][1]) == payload


def test_content_length_over_the_limit_is_413_before_a_byte_is_read():
    request, pulled = starlette_request([b"x" * 10], length=LIMIT.max_bytes + 1)
    with pytest.raises(Refused) as refused:
        body(request, LIMIT)
    assert refused.value.status == 413 and pulled == []
    assert refused.value.message == "the test body (1.1 MiB) exceeds the limit of 1 MiB (LDH_TEST_MB)"


def test_a_chunked_body_is_413_once_it_passes_the_limit_even_without_any_part():
    data, boundary = form([("files", ("big.bin", b"\0" * (3 * 1024 * 1024), "application/octet-stream"))])
    chunks = split(data, 65536)
    with pytest.raises(Refused) as refused:
        receive(chunks, boundary, Collected())  # no Content-Length
    assert refused.value.status == 413
    assert refused.value.message == "the test body exceeds the limit of 1 MiB (LDH_TEST_MB)"
    # and with no payload at all: parts that are all framing cannot pile up past the limit either
    empty_parts = b"".join(b'--b\r\nContent-Disposition: form-data; name="f%d"\r\n\r\n\r\n' % i
                           for i in range(LIMIT.max_bytes // 40))
    sink = Collected()
    with pytest.raises(Refused) as refused:
        receive(split(empty_parts, 65536), b"b", sink)
    assert refused.value.status == 413 and 0 < len(sink.parts) < LIMIT.max_bytes // 40


def test_counting_stops_reading_at_the_first_chunk_past_the_limit():
    data, boundary = form([("files", ("big.bin", b"\0" * (3 * 1024 * 1024), "application/octet-stream"))])
    chunks = split(data, 65536)

    async def run():
        request, pulled = starlette_request(chunks, None)
        with pytest.raises(Refused):
            await receive_multipart(body(request, LIMIT), boundary, Collected())
        return len(pulled)

    assert asyncio.run(run()) == LIMIT.max_bytes // 65536 + 1 < len(chunks)


def test_a_body_cut_before_its_closing_boundary_or_without_one_is_400():
    data, boundary = form([("files", ("a.bin", b"abc" * 100, "application/octet-stream"))])
    with pytest.raises(Refused) as refused:
        receive([data[:-len(boundary) - 6]], boundary, Collected())
    assert refused.value.status == 400
    assert refused.value.message == "the multipart body ended before its closing boundary"
    with pytest.raises(Refused) as refused:
        receive([b"this is no multipart body at all"], boundary, Collected())
    assert refused.value.status == 400 and refused.value.message.startswith("malformed multipart body")


def test_a_sinks_own_refusal_passes_through_unchanged():
    class Picky(Collected):
        def begin(self, headers):
            raise Refused(415, "not this part")

    data, boundary = form([("files", ("a.bin", b"abc", "application/octet-stream"))])
    with pytest.raises(Refused) as refused:
        receive([data], boundary, Picky())
    assert (refused.value.status, refused.value.message) == (415, "not this part")
