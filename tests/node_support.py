"""Test support for the DICOM node: phantom studies on disk, a stand-in analyzer, and a node process runner.

The stand-in analyzer (used until/unless the shipped models exist) writes one derived DICOM object per series
into the same study, so the whole receive → assemble → route → job → export path is exercised without models.
Run as a script it starts a node process: ``python tests/node_support.py DATA_DIR PORT [EXPORT] [STOW_URL]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pydicom
from pydicom.uid import generate_uid

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.dicom_data import phantom_series, replicate  # noqa: E402  (re-exported for the tests)

__all__ = ["ROOT", "CopyAnalyzer", "node_settings", "phantom_series", "replicate"]


class CopyAnalyzer:
    """Stand-in for the AI: one derived object per series (a copy of its middle slice, new series, same study)."""

    model_version = "standin-1"

    def __init__(self, delay_s: float = 0.0):
        self.delay_s = delay_s
        self.calls: list[Path] = []

    def __call__(self, series_dir: Path, out_dir: Path) -> list[Path]:
        import time

        time.sleep(self.delay_s)
        self.calls.append(Path(series_dir))
        files = sorted(Path(series_dir).glob("*.dcm"))
        ds = pydicom.dcmread(files[len(files) // 2])
        ds.SeriesInstanceUID = generate_uid(entropy_srcs=[str(ds.SeriesInstanceUID), "result"])
        ds.SOPInstanceUID = generate_uid(entropy_srcs=[str(ds.SeriesInstanceUID), "sop"])
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.SeriesDescription = "LDH Assist stand-in result"
        ds.SeriesNumber = 999
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / "result.dcm"
        ds.save_as(path, enforce_file_format=True)
        return [path]


def node_settings(data_dir: Path, port: int = 0, export: str = "", stow_url: str | None = None, **kw):
    from ai_service.config import Settings

    values = dict(data_dir=data_dir, node_port=port, node_host="127.0.0.1", node_quiet_seconds=0.5,
                  node_min_free_mb=0, node_export_dimse=export, node_export_stow_url=stow_url,
                  node_export_backoff_s=0.2, node_export_backoff_max_s=1.0, node_export_max_attempts=50,
                  node_receivers=0)
    values.update(kw)
    return Settings(_env_file=None, **values)


def main(argv: list[str]) -> None:
    import logging
    import os

    from dicom_node.node import Node

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    data_dir, port = Path(argv[0]), int(argv[1])
    export = argv[2] if len(argv) > 2 else ""
    stow = argv[3] if len(argv) > 3 and argv[3] else None
    node = Node(node_settings(data_dir, port, export, stow,
                              node_receivers=int(os.environ.get("NODE_RECEIVERS", "2"))), CopyAnalyzer())
    node.start()
    print(f"READY {node.port}", flush=True)
    node.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])
