"""LDH_STATE_DIR (terraform: the Filestore mount on Cloud Run): with the data in a bucket, the node's database,
inbox and results and the API's job database sit in that folder, not in the instance's memory file system (they
went to a folder literally named `gs:` under the working directory before)."""

from __future__ import annotations

import pydicom

from ai_service.api.state import AppState
from dicom_node.node import Node
from tests.node_support import CopyAnalyzer, node_settings, phantom_series
from tests.peers import storescu, wait_for
from tests.storage_support import BUCKET


def test_a_bucket_data_dir_keeps_the_node_and_job_state_in_the_state_dir(gcs_emulator, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    state = tmp_path / "state"
    settings = node_settings(f"gs://{BUCKET}/state-dir", state_dir=state, api_keys="t0ken:checker")
    series = phantom_series(tmp_path / "phantom", slices=8, matrix=64)
    with Node(settings, CopyAnalyzer()) as node:
        assert storescu(node.port, series).returncode == 0
        wait_for(lambda: node.db.query("SELECT 1 FROM jobs WHERE state = 'done'"), 60, what="the series analysed")
    app = AppState(settings)
    try:
        assert app.jobs is not None and (state / "api-jobs.sqlite").exists()
    finally:
        app.stop()
    study = str(pydicom.dcmread(series[0]).StudyInstanceUID)
    assert (state / "node.db").exists() and any((state / "results" / study).rglob("result.dcm"))
    assert len(list((state / "inbox" / study).rglob("*.dcm"))) == len(series)  # the received instances
    assert not (tmp_path / "gs:").exists()
