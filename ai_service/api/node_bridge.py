"""Uploads through the DICOM node: the same durable inbox, assembly, routing, jobs and export as a C-STORE.

Used when ``ldh serve`` runs the node and the API in one process (``AppState.use_node``). An upload, once
validated and (for MHA/NIfTI/JPG/PNG) converted by :mod:`ai_service.ingest`, enters the node's inbox as one
pseudo-association (calling AE ``WEB-UPLOAD``) that ends when the last file is stored; the node assembles the
series after its quiet period, routes it, analyses it with the shared engine and exports SEG + SR to its
destinations. The API's own job waits for the node's job and then adds what the web page needs (slice and
mask PNGs) to the node's result folder, which has the API's layout (``results/<study>/<seg>+<cls>/<series>/``).
Reviewed SRs of such studies are queued in the node's outbox for the same destinations.
"""

from __future__ import annotations

import io
import logging
import time
from pathlib import Path

import pydicom
from pydicom.filereader import read_file_meta_info

from ai_service.errors import InputError
from ai_service.ingest import PreparedSeries

log = logging.getLogger(__name__)
UPLOAD_AE = "WEB-UPLOAD"
NODE_ORIGIN = "node"
_INPUT_ERRORS = ("InputError: ", "EncodingError: ", "IngestError: ")


class NodeBridge:
    def __init__(self, node, wait_timeout_s: float = 900.0):
        self.node = node
        self.data_dir = Path(node.data_dir).resolve()
        self.wait_timeout_s = wait_timeout_s

    # ----------------------------------------------------------------------------------------- ingest
    def submit(self, prepared: PreparedSeries) -> str:
        """Store every instance through the inbox (durable before this returns); returns the series' inbox prefix."""
        from dicom_node.intake import Intake

        with Intake(self.node.inbox, self.node.db, UPLOAD_AE, "web upload") as batch:
            for path in sorted(prepared.folder.iterdir()):
                outcome = batch.store(_part10_bytes(path))
                if not outcome.ok:
                    raise InputError(f"{path.name}: {outcome.reason}")
        folder = self.node.inbox.root / prepared.study_uid / prepared.series_uid
        return folder.resolve().relative_to(self.data_dir).as_posix()

    # ------------------------------------------------------------------------------------------- jobs
    def wait_for_result(self, job, report) -> str:
        """Block until the node analysed the series; returns the result prefix (relative to the data dir)."""
        deadline = time.monotonic() + self.wait_timeout_s
        while True:
            rows = self.node.db.query(
                "SELECT state, error, out_dir FROM jobs WHERE study_uid = ? AND series_uid = ? AND model_version = ?",
                (job.study_uid, job.series_uid, job.model_version))
            row = rows[0] if rows else None
            if row is not None and row["state"] == "done":
                return Path(row["out_dir"]).resolve().relative_to(self.data_dir).as_posix()
            if row is not None and row["state"] == "failed":
                error = row["error"] or "the DICOM node could not analyse the series"
                for prefix in _INPUT_ERRORS:
                    if error.startswith(prefix):
                        raise InputError(error[len(prefix):])
                raise RuntimeError(f"the DICOM node failed to analyse the series: {error}")
            skipped = self.node.db.query("SELECT reason FROM series WHERE series_uid = ? AND state = 'skipped'",
                                         (job.series_uid,))
            if skipped:
                raise InputError(f"the series was received but not routed for analysis: {skipped[0]['reason']}")
            if time.monotonic() > deadline:
                raise RuntimeError("the DICOM node did not analyse the series in time")
            stage = "waiting for the DICOM node" if row is None else f"DICOM node: {row['state']}"
            report(stage, 0.2 if row is None else 0.5)
            time.sleep(0.25)

    def latest_job(self, study_uid: str):
        """A study the node analysed on its own (C-STORE from a PACS) as an API job, or None."""
        from ai_service.jobs import Job

        rows = self.node.db.query(
            "SELECT id, series_uid, model_version, series_dir, out_dir, created, updated FROM jobs"
            " WHERE study_uid = ? AND state = 'done' ORDER BY updated DESC LIMIT 1", (study_uid,))
        if not rows:
            return None
        r = rows[0]
        rel = lambda p: Path(p).resolve().relative_to(self.data_dir).as_posix()  # noqa: E731
        return Job(id=f"node-{r['id']}", study_uid=study_uid, series_uid=r["series_uid"],
                   model_version=r["model_version"], source="dicom-node", origin=NODE_ORIGIN,
                   series_prefix=rel(r["series_dir"]), state="done", stage="done", progress=1.0, error=None,
                   error_status=None, result_prefix=rel(r["out_dir"]), created=r["created"], updated=r["updated"],
                   started=None, finished=r["updated"])

    # ----------------------------------------------------------------------------------------- export
    def export_reviewed_sr(self, study_uid: str, sr_path: Path) -> list[str]:
        """Queue a reviewed SR in the node's outbox for every destination; returns their names."""
        sop = str(read_file_meta_info(sr_path).MediaStorageSOPInstanceUID)
        exports = self.node.exporter.exports_for([(Path(sr_path), sop)])
        now = time.time()
        with self.node.db.tx() as con:
            con.executemany(
                "INSERT OR IGNORE INTO outbox (job_id, study_uid, destination, path, sop_uid, state, next_at,"
                " created, updated) VALUES (NULL,?,?,?,?, 'pending', ?, ?, ?)",
                [(study_uid, dest, str(path), uid, now, now, now) for dest, path, uid in exports])
        self.node.exporter.wake.set()
        return [dest for dest, _, _ in exports]


def _part10_bytes(path: Path) -> bytes:
    """The file's bytes as Part 10 (a bare data set, as some uploads are, is wrapped with a file meta group)."""
    raw = path.read_bytes()
    if raw[128:132] == b"DICM":
        return raw
    buf = io.BytesIO()
    pydicom.dcmread(path, force=True).save_as(buf, enforce_file_format=True)
    return buf.getvalue()
