"""The GCS backend of :class:`ai_service.storage.Storage`: keys are objects under ``gs://bucket/prefix``.

Vertex AI runs the pipeline's components on machines that share no disk with the service, so feedback and dataset
versions must live in a bucket. One key is one object, and one upload is one object generation: a reader sees the
previous object or the new one, never part of one (the atomicity the local backend gets from rename). Create-once
and read-modify-write use generation preconditions (``if_generation_match``: 0 = "must not exist", else "still the
generation I read"); GCS refuses a stale write with 412, raised as :class:`~ai_service.storage.Conflict`. The client
honours ``STORAGE_EMULATOR_HOST`` (tests run against an emulator on 127.0.0.1).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ai_service.storage import Conflict, NotFound, Storage, StorageError, check_key

UPDATE_ATTEMPTS = 20  # read-modify-write retries when other writers keep getting in first


def parse_location(location: str) -> tuple[str, str]:
    """``gs://bucket/some/prefix`` -> (``bucket``, ``some/prefix``); the prefix may be empty."""
    bucket, _, prefix = location.removeprefix("gs://").partition("/")
    if not bucket:
        raise ValueError(f"{location!r} names no bucket (expected gs://bucket[/prefix])")
    prefix = prefix.strip("/")
    return bucket, check_key(prefix) if prefix else ""


class GCSStorage(Storage):
    """Objects ``<prefix>/<key>`` in one bucket, through google-cloud-storage."""

    def __init__(self, location: str, client=None):
        from google.cloud import storage

        bucket, self.prefix = parse_location(location)
        self.bucket = (client or storage.Client()).bucket(bucket)

    def _name(self, key: str) -> str:
        key = check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _call(self, key: str, action, blob=None):
        from google.api_core import exceptions

        try:
            return action(blob or self.bucket.blob(self._name(key)))
        except exceptions.NotFound as exc:
            raise NotFound(key) from exc
        except exceptions.PreconditionFailed as exc:
            raise Conflict(f"GCS {key}: changed by another writer") from exc
        except exceptions.GoogleAPICallError as exc:
            raise StorageError(f"GCS {key}: {exc.message}") from exc

    def write_bytes(self, key: str, data: bytes) -> None:
        self._call(key, lambda blob: blob.upload_from_string(data))

    def write_file(self, key: str, source: Path) -> None:
        self._call(key, lambda blob: blob.upload_from_filename(str(source)))

    def write_if_absent(self, key: str, data: bytes) -> bool:
        try:
            self._call(key, lambda blob: blob.upload_from_string(data, if_generation_match=0))
            return True
        except Conflict:
            return False

    def update(self, key: str, change: Callable[[bytes | None], bytes]) -> bytes:
        for _ in range(UPDATE_ATTEMPTS):
            try:
                return self._update_once(key, change)
            except Conflict:  # another writer got in first: read again
                continue
        raise Conflict(f"GCS {key}: still changing after {UPDATE_ATTEMPTS} attempts")

    def _update_once(self, key: str, change: Callable[[bytes | None], bytes]) -> bytes:
        blob = self.bucket.blob(self._name(key))
        try:
            self._call(key, lambda b: b.reload(), blob)  # the generation we read, then that generation's bytes
            generation = blob.generation
            current = self._call(key, lambda b: b.download_as_bytes(if_generation_match=generation), blob)
        except NotFound:
            current, generation = None, 0
        data = change(current)
        self._call(key, lambda b: b.upload_from_string(data, if_generation_match=generation))
        return data

    def read_bytes(self, key: str) -> bytes:
        return self._call(key, lambda blob: blob.download_as_bytes())

    def exists(self, key: str) -> bool:
        return self._call(key, lambda blob: blob.exists())

    def list(self, prefix: str) -> list[str]:
        from google.api_core import exceptions

        base = self._name(prefix.rstrip("/")) + "/"
        try:
            names = [b.name for b in self.bucket.client.list_blobs(self.bucket, prefix=base)]
        except exceptions.GoogleAPICallError as exc:
            raise StorageError(f"GCS list {prefix}: {exc.message}") from exc
        skip = len(self.prefix) + 1 if self.prefix else 0
        return sorted(n[skip:] for n in names if not n.endswith("/") and not n.rsplit("/", 1)[-1].startswith("."))

    def delete(self, key: str) -> None:
        try:
            self._call(key, lambda blob: blob.delete())
        except NotFound:
            pass  # absent is fine
