"""Typed findings: what the inference engine concludes about one series, and its JSON form (findings.json).

Every encoder (SEG, SR, preview, API) reads these objects, never the raw network outputs, so they are the
contract between inference and everything downstream. Pixel coordinates are always in the *input* grid:
``slice_index`` counts slices in the order the loader sorted them (DICOM: along the slice normal),
``box`` is ``[x0, y0, x1, y1]`` in pixel-edge coordinates (columns ``x0 .. x1-1``, rows ``y0 .. y1-1``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ai_service.labels import LEVELS

FINDINGS_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Extent3D:
    """Where a disc lies in the input grid: first/last slice it touches and its union box over those slices."""

    first_slice: int
    last_slice: int
    box: tuple[int, int, int, int]
    volume_mm3: float


@dataclass(frozen=True)
class DiscFinding:
    """One intervertebral disc level as found by the AI."""

    level: str
    probability: float
    herniation: bool
    slice_index: int
    box: tuple[int, int, int, int]
    extent: Extent3D
    sop_instance_uid: str | None = None  # key slice's source instance (DICOM inputs only)
    frame_number: int | None = None  # 1-based frame of a multi-frame source (Enhanced MR), else None

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise ValueError(f"unknown disc level {self.level!r}; expected one of {', '.join(LEVELS)}")
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError(f"probability {self.probability} outside [0, 1] for {self.level}")
        x0, y0, x1, y1 = self.box
        if x1 <= x0 or y1 <= y0:
            raise ValueError(f"empty box {self.box} for {self.level}")


@dataclass(frozen=True)
class ModelVersions:
    segmentation: str
    classification: str

    @property
    def label(self) -> str:
        """Single version string for DICOM SoftwareVersions / AlgorithmVersion."""
        return f"seg={self.segmentation};cls={self.classification}"


@dataclass
class Findings:
    """All findings for one analysed series."""

    models: ModelVersions
    operating_threshold: float
    discs: list[DiscFinding]
    shape: tuple[int, int, int]  # (slices, rows, columns) of the input grid
    spacing: tuple[float, float, float]  # (column, row, slice) spacing in mm
    study_instance_uid: str | None = None
    series_instance_uid: str | None = None
    frame_of_reference_uid: str | None = None
    source: str | None = None  # input kind: dicom | mha | nifti | images
    warnings: list[str] = field(default_factory=list)
    not_analysable: str | None = None  # why the models declined this series (then ``discs`` is empty)

    def disc(self, level: str) -> DiscFinding | None:
        return next((d for d in self.discs if d.level == level), None)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["schema_version"] = FINDINGS_SCHEMA_VERSION
        data["models"]["version"] = self.models.label
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Findings:
        models = data["models"]
        discs = [
            DiscFinding(
                level=d["level"],
                probability=float(d["probability"]),
                herniation=bool(d["herniation"]),
                slice_index=int(d["slice_index"]),
                box=tuple(int(v) for v in d["box"]),
                extent=Extent3D(
                    first_slice=int(d["extent"]["first_slice"]),
                    last_slice=int(d["extent"]["last_slice"]),
                    box=tuple(int(v) for v in d["extent"]["box"]),
                    volume_mm3=float(d["extent"]["volume_mm3"]),
                ),
                sop_instance_uid=d.get("sop_instance_uid"),
                frame_number=d.get("frame_number"),
            )
            for d in data["discs"]
        ]
        return cls(
            models=ModelVersions(models["segmentation"], models["classification"]),
            operating_threshold=float(data["operating_threshold"]),
            discs=discs,
            shape=tuple(int(v) for v in data["shape"]),
            spacing=tuple(float(v) for v in data["spacing"]),
            study_instance_uid=data.get("study_instance_uid"),
            series_instance_uid=data.get("series_instance_uid"),
            frame_of_reference_uid=data.get("frame_of_reference_uid"),
            source=data.get("source"),
            warnings=list(data.get("warnings", [])),
            not_analysable=data.get("not_analysable"),
        )

    @classmethod
    def load(cls, path: Path) -> Findings:
        return cls.from_dict(json.loads(Path(path).read_text()))
