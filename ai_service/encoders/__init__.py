"""DICOM encoders: SEG, TID 1500 SR (AI and reviewed), Secondary Capture preview; and the SR reader.

One module per IOD (``seg``, ``sr``, ``preview``), the codes in ``codes``, who-made-it in ``identity``, the
source-series checks in ``sources``. See ``CONFORMANCE.md`` for SOP classes, templates and codes.
"""

from ai_service.encoders.preview import encode_preview
from ai_service.encoders.seg import encode_seg
from ai_service.encoders.sources import EncodingError
from ai_service.encoders.sr import ReviewedDisc, Reviewer, encode_reviewed_sr, encode_sr
from ai_service.encoders.sr_reader import SRDisc, read_sr_findings

__all__ = [
    "EncodingError",
    "ReviewedDisc",
    "Reviewer",
    "SRDisc",
    "encode_preview",
    "encode_reviewed_sr",
    "encode_seg",
    "encode_sr",
    "read_sr_findings",
]
