"""What the C-STORE SCP accepts: these storage SOP classes, in every transfer syntax pynetdicom knows.

Instances are stored exactly as received (no transcoding), so accepting a compressed syntax costs nothing.
"""

from __future__ import annotations

from pynetdicom import ALL_TRANSFER_SYNTAXES
from pynetdicom import sop_class as S

IMAGE_STORAGE = (
    S.MRImageStorage,
    S.EnhancedMRImageStorage,
    S.EnhancedMRColorImageStorage,
    S.LegacyConvertedEnhancedMRImageStorage,
    S.CTImageStorage,
    S.EnhancedCTImageStorage,
    S.LegacyConvertedEnhancedCTImageStorage,
    S.SecondaryCaptureImageStorage,
    S.MultiFrameSingleBitSecondaryCaptureImageStorage,
    S.MultiFrameGrayscaleByteSecondaryCaptureImageStorage,
    S.MultiFrameGrayscaleWordSecondaryCaptureImageStorage,
    S.MultiFrameTrueColorSecondaryCaptureImageStorage,
    S.SegmentationStorage,
)
SR_STORAGE = (
    S.BasicTextSRStorage,
    S.EnhancedSRStorage,
    S.ComprehensiveSRStorage,
    S.Comprehensive3DSRStorage,
    S.ExtensibleSRStorage,
)
STORAGE = IMAGE_STORAGE + SR_STORAGE
NEEDS_PIXELS = frozenset(str(uid) for uid in IMAGE_STORAGE)
TRANSFER_SYNTAXES = list(ALL_TRANSFER_SYNTAXES)
