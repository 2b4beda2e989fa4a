"""Test support for the Cloud Healthcare receiver: the store's notifications for files, and a DICOMweb proxy in
front of Orthanc (the store's stand-in) that can slow down or fail requests the way a busy store does.

The proxy is real HTTP in front of a real DICOMweb server; only the failures it injects (a 503 with a short text
body) are made up, since no stand-in produces Cloud Healthcare's own error responses on demand."""

from __future__ import annotations

import http.server
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Callable

import pydicom

STORE = "projects/ldh-test-project/locations/europe-west4/datasets/ldh-phi/dicomStores/ldh-dicom"


def notice(study: str, series: str, sop: str, store: str = STORE) -> bytes:
    return f"{store}/dicomWeb/studies/{study}/series/{series}/instances/{sop}".encode()


def notices(files: list[Path], store: str = STORE) -> list[bytes]:
    out = []
    for path in files:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        out.append(notice(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID, store))
    return out


class DicomwebProxy:
    """Forwards every request to ``upstream``; ``fail(method, path, n)`` (n = how many times this path was asked
    for, from 1) returning True answers 503 instead; ``delay_s`` sleeps before each instance GET."""

    def __init__(self, upstream: str, fail: Callable[[str, str, int], bool] | None = None, delay_s: float = 0.0):
        self.upstream = upstream.rstrip("/")
        self.fail = fail or (lambda method, path, n: False)
        self.delay_s = delay_s
        self.asked: Counter = Counter()
        self.served: Counter = Counter()  # instance GETs answered 200
        self._lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                proxy._handle(self, "GET")

            def do_POST(self):
                proxy._handle(self, "POST")

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def instance_gets(self) -> int:
        with self._lock:
            return sum(n for (method, path), n in self.served.items() if method == "GET" and "/instances/" in path)

    def _handle(self, handler, method: str) -> None:
        body = handler.rfile.read(int(handler.headers.get("Content-Length", 0) or 0)) if method == "POST" else None
        if method == "POST" and handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = _read_chunked(handler.rfile)
        with self._lock:
            self.asked[(method, handler.path)] += 1
            n = self.asked[(method, handler.path)]
        if self.fail(method, handler.path, n):
            payload = b"503 Service Unavailable (injected by the test proxy)"
            handler.send_response(503)
            handler.send_header("Content-Type", "text/plain")
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            handler.wfile.write(payload)
            return
        if method == "GET" and "/instances/" in handler.path and self.delay_s:
            time.sleep(self.delay_s)
        headers = {k: v for k, v in handler.headers.items() if k.lower() in ("accept", "content-type")}
        request = urllib.request.Request(self.upstream + handler.path, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                status, payload, kind = response.status, response.read(), response.headers.get("Content-Type", "")
        except urllib.error.HTTPError as exc:
            status, payload, kind = exc.code, exc.read(), exc.headers.get("Content-Type", "")
        handler.send_response(status)
        handler.send_header("Content-Type", kind)
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)
        if status == 200:
            with self._lock:
                self.served[(method, handler.path)] += 1

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _read_chunked(stream) -> bytes:
    out = bytearray()
    while True:
        size = int(stream.readline().strip().split(b";")[0], 16)
        if size == 0:
            stream.readline()
            return bytes(out)
        out += stream.read(size)
        stream.readline()
