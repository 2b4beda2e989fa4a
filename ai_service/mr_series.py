"""Classic MR Image Storage series from a pixel volume and its geometry: one builder for every producer.

The phantom generator (UIDs derived from its seed) and the upload converter (fresh UIDs) differ only in their
descriptive attributes; the per-slice modules every consumer relies on — file meta, SOP common, image plane
(position, orientation, slice location along the plane normal) and image pixel — are built here once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage


@dataclass(frozen=True)
class SeriesGeometry:
    """Where the voxels are: spacing (column, row, slice) in mm, first pixel of slice 0, unit axes (LPS)."""

    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    col_dir: tuple[float, float, float]  # direction of increasing column index
    row_dir: tuple[float, float, float]  # direction of increasing row index
    slice_dir: tuple[float, float, float]  # direction of increasing slice index


@dataclass(frozen=True)
class Implementation:
    """Who wrote the files (File Meta Information)."""

    class_uid: str
    version_name: str | None = None


def ds_str(value: float) -> str:
    """A DICOM DS string: plain decimal, at most 16 characters, no "-0"."""
    text = f"{float(value):.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text[:16]


def mr_series(
    pixels: np.ndarray,
    geometry: SeriesGeometry,
    attributes: Mapping[str, object],
    sop_instance_uids: Sequence[str],
    *,
    implementation: Implementation,
    window: tuple[float, float],
    bits_stored: int = 16,
) -> list[Dataset]:
    """One Explicit VR Little Endian MR Image Storage dataset per slice of ``pixels`` (slices, rows, cols) uint16.

    ``attributes`` (DICOM keyword → value) are the series-wide ones: patient, study, series, equipment and
    acquisition; everything that varies per slice or follows from the pixels and geometry is set here.
    """
    n, rows, cols = pixels.shape
    col_dir, row_dir, slice_dir = (np.asarray(v, dtype=float) for v in
                                   (geometry.col_dir, geometry.row_dir, geometry.slice_dir))
    normal = np.cross(col_dir, row_dir)
    sx, sy, sz = geometry.spacing
    origin = np.asarray(geometry.origin, dtype=float)
    centre, width = window
    out = []
    for k in range(n):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        meta.MediaStorageSOPInstanceUID = sop_instance_uids[k]
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = implementation.class_uid
        if implementation.version_name:
            meta.ImplementationVersionName = implementation.version_name
        ds = Dataset()
        ds.file_meta = meta
        for keyword, value in attributes.items():
            setattr(ds, keyword, value)
        ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, sop_instance_uids[k]
        ds.InstanceNumber = str(k + 1)
        ipp = origin + k * sz * slice_dir
        ds.ImagePositionPatient = [ds_str(v) for v in ipp]
        ds.ImageOrientationPatient = [ds_str(v) for v in (*col_dir, *row_dir)]
        ds.SliceLocation = ds_str(float(ipp @ normal))
        ds.SpacingBetweenSlices = ds_str(sz)
        ds.PixelSpacing = [ds_str(sy), ds_str(sx)]  # row spacing, column spacing
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = rows, cols
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, bits_stored, bits_stored - 1, 0
        ds.WindowCenter, ds.WindowWidth = ds_str(centre), ds_str(max(float(width), 1.0))
        ds.LossyImageCompression = "00"
        ds.BurnedInAnnotation = "NO"
        ds.PixelData = np.ascontiguousarray(pixels[k], dtype="<u2").tobytes()
        out.append(ds)
    return out
