"""The analysis worker the DICOM node calls: one routed series folder in, the DICOM results to export out.

``dicom_node`` knows nothing of neural networks; it only needs a callable with a ``model_version`` (part of the
job key, so a new production model analyses a series again while the same model never does it twice).
"""

from __future__ import annotations

from pathlib import Path

from ai_service.config import Settings

EXPORTED = ("seg", "sr", "preview")  # in this order: the SR references the SEG


class SeriesAnalyzer:
    """Loads the models once; ``analyzer(series_dir, out_dir)`` writes all outputs and returns the DICOM ones."""

    def __init__(self, settings: Settings, engine=None):
        from ai_service.engine import InferenceEngine

        self.settings = settings
        if engine is None:
            engine = InferenceEngine(settings)
            engine.warm_up()  # compile the graphs now, not on the first study a PACS sends
        self.use_engine(engine)

    def use_engine(self, engine) -> None:
        """Analyse with ``engine`` from the next series on (hot reload); a series under way keeps its engine."""
        self.engine = engine
        self.model_version = f"{engine.seg_ref.version}+{engine.cls_ref.version}"

    def __call__(self, series_dir: Path, out_dir: Path) -> list[Path]:
        from ai_service.analyze import analyze_path

        out_dir = Path(out_dir)
        for stale in out_dir.glob("*.dcm"):  # from an interrupted attempt: this run decides what exists
            stale.unlink()
        analyze_path(Path(series_dir), out_dir, self.settings, self.engine)
        return [out_dir / f"{name}.dcm" for name in EXPORTED if (out_dir / f"{name}.dcm").exists()]
