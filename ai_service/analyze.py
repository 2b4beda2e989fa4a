"""``ldh analyze``: one input → findings.json, discs.mha, preview.png (+ seg.dcm, sr.dcm, preview.dcm for DICOM).

Outputs are written into a hidden staging folder and moved into place only when all of them exist, so a failure
leaves nothing partial behind.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import SimpleITK as sitk

from ai_service.config import Settings
from ai_service.engine import Analysis, InferenceEngine
from ai_service.findings import Findings
from ai_service.preview import render_preview
from ai_service.volume import Volume, load_volume

log = logging.getLogger(__name__)


@dataclass
class AnalyzeResult:
    findings: Findings
    files: dict[str, Path]
    analysis: Analysis


def analyze_path(source: Path, out: Path, settings: Settings, engine: InferenceEngine | None = None) -> AnalyzeResult:
    volume = load_volume(
        source, pixel_spacing_mm=settings.default_pixel_spacing_mm, slice_spacing_mm=settings.default_slice_spacing_mm
    )
    engine = engine or InferenceEngine(settings)
    analysis = engine.analyze(volume)
    files = write_outputs(volume, analysis, out, settings)
    log.info(
        "analysed",
        extra={"series": volume.series_instance_uid, "discs": len(analysis.findings.discs),
               **{f"{k}_ms": round(v, 1) for k, v in analysis.timings_ms.items()}},
    )
    return AnalyzeResult(analysis.findings, files, analysis)


def encode_dicom(volume: Volume, analysis: Analysis, preview_rgb, settings: Settings) -> dict:
    """SEG (when a disc was found), the TID 1500 SR, and the optional Secondary Capture preview."""
    from ai_service.encoders import encode_preview, encode_seg, encode_sr

    out = {}
    seg = encode_seg(volume.datasets, analysis.label_map, analysis.findings, settings)
    if seg is not None:
        out["seg"] = seg
    out["sr"] = encode_sr(volume.datasets, analysis.findings, settings, seg=seg)
    if settings.emit_preview:
        out["preview"] = encode_preview(volume.datasets, analysis.findings, preview_rgb, settings, label=False)
    return out


def write_outputs(volume: Volume, analysis: Analysis, out: Path, settings: Settings) -> dict[str, Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".ldh-staging-", dir=out))
    try:
        (staging / "findings.json").write_text(analysis.findings.to_json() + "\n")
        sitk.WriteImage(volume.to_sitk(analysis.label_map), str(staging / "discs.mha"), useCompression=True)
        preview = render_preview(volume.array, analysis.findings)
        if not cv2.imwrite(str(staging / "preview.png"), cv2.cvtColor(preview, cv2.COLOR_RGB2BGR)):
            raise OSError("could not write preview.png")
        if volume.kind == "dicom":
            for name, ds in encode_dicom(volume, analysis, preview, settings).items():
                ds.save_as(staging / f"{name}.dcm", enforce_file_format=True)
        files = {}
        for item in sorted(staging.iterdir()):
            target = out / item.name
            item.replace(target)
            files[item.name] = target
        return files
    finally:
        shutil.rmtree(staging, ignore_errors=True)
