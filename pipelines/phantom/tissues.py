"""Fine tissue classes painted by the rasteriser, and how they map to output labels and to intensities.

The rasteriser paints one uint8 *fine class* per pixel (annulus vs nucleus, cortex vs marrow, herniated
material ...). Labels (ai_service.labels) and image intensities are both lookups from it, so the image and the
label map can never disagree about where a structure is.
"""

from __future__ import annotations

import numpy as np

from ai_service import labels as L

# --- fine classes (values < 256) ----------------------------------------------------------------------------
AIR, SKIN, SUBCUT_FAT, MUSCLE, PSOAS, ABDOMEN, PREVERTEBRAL, VESSEL = 0, 1, 2, 3, 4, 5, 6, 7
INTERSPINOUS, ALL_LIGAMENT, CSF, CONUS, CAUDA, ROOT, PE_CORTEX, PE_MARROW = 8, 9, 10, 11, 12, 13, 14, 15
EPIDURAL_FAT, FLAVUM, PLL, UPPER_CORTEX, UPPER_MARROW, UPPER_ANNULUS, UPPER_NUCLEUS = 16, 17, 18, 19, 20, 21, 22
SACRAL_REMNANT = 23


def vertebra_cortex(v: int) -> int:
    """v = 0 (T12) ... 6 (S1 / sacrum)."""
    return 30 + 2 * v


def vertebra_marrow(v: int) -> int:
    return 31 + 2 * v


def sacral_segment_marrow(k: int) -> int:
    """k = 1 .. 4 for S2 .. S5 (S1 uses vertebra_marrow(6))."""
    return 44 + (k - 1)


def disc_annulus(d: int) -> int:
    """d = 0 (T12-L1) ... 5 (L5-S1)."""
    return 60 + 4 * d


def disc_nucleus(d: int) -> int:
    return 61 + 4 * d


def disc_herniation(d: int) -> int:
    return 62 + 4 * d


def disc_transition(d: int) -> int:
    """Zone between annulus and nucleus (so the nucleus has no hard edge)."""
    return 63 + 4 * d


# --- lookup tables ------------------------------------------------------------------------------------------
_TISSUE_OF: dict[int, str] = {
    AIR: "air", SKIN: "skin", SUBCUT_FAT: "fat", MUSCLE: "muscle", PSOAS: "muscle", ABDOMEN: "abdomen",
    PREVERTEBRAL: "soft", VESSEL: "vessel", INTERSPINOUS: "ligament", ALL_LIGAMENT: "ligament", CSF: "csf",
    CONUS: "nerve", CAUDA: "nerve", ROOT: "nerve", PE_CORTEX: "cortex", PE_MARROW: "pe_marrow",
    EPIDURAL_FAT: "epi_fat", FLAVUM: "ligament", PLL: "ligament", UPPER_CORTEX: "cortex",
    UPPER_MARROW: "marrow", UPPER_ANNULUS: "annulus", UPPER_NUCLEUS: "nucleus", SACRAL_REMNANT: "ligament",
}
# T10/T11 bodies and the discs above T12-L1 share one label each (99, 199): they are bodies and discs like any
# other, so a model learns anatomy and the level count from the sacrum does the naming.
_LABEL_OF: dict[int, int] = {
    AIR: L.AIR, SKIN: L.FAT, SUBCUT_FAT: L.FAT, MUSCLE: L.MUSCLE, PSOAS: L.MUSCLE, ABDOMEN: L.SOFT_TISSUE,
    PREVERTEBRAL: L.SOFT_TISSUE, VESSEL: L.SOFT_TISSUE, INTERSPINOUS: L.SOFT_TISSUE,
    ALL_LIGAMENT: L.SOFT_TISSUE, CSF: L.CSF, CONUS: L.NERVE, CAUDA: L.NERVE, ROOT: L.NERVE,
    PE_CORTEX: L.POSTERIOR_ELEMENTS, PE_MARROW: L.POSTERIOR_ELEMENTS, EPIDURAL_FAT: L.EPIDURAL,
    FLAVUM: L.EPIDURAL, PLL: L.EPIDURAL, UPPER_CORTEX: L.UPPER_VERTEBRA, UPPER_MARROW: L.UPPER_VERTEBRA,
    UPPER_ANNULUS: L.UPPER_DISC, UPPER_NUCLEUS: L.UPPER_DISC, SACRAL_REMNANT: L.SACRUM,
}
for _v, _name in enumerate(L.VERTEBRAE):
    _TISSUE_OF[vertebra_cortex(_v)] = "cortex"
    _TISSUE_OF[vertebra_marrow(_v)] = "sacral_marrow" if _name == "S1" else "marrow"
    _LABEL_OF[vertebra_cortex(_v)] = _LABEL_OF[vertebra_marrow(_v)] = L.vertebra_label(_name)
for _k in range(1, 5):
    _TISSUE_OF[sacral_segment_marrow(_k)] = "sacral_marrow"
    _LABEL_OF[sacral_segment_marrow(_k)] = L.SACRUM
for _d in range(len(L.LEVELS) + 1):
    _value = L.DISC_T12_L1 + _d
    for _code, _tissue in ((disc_annulus(_d), "annulus"), (disc_nucleus(_d), "nucleus"),
                           (disc_herniation(_d), "nucleus"), (disc_transition(_d), "nucleus")):
        _TISSUE_OF[_code] = _tissue
        _LABEL_OF[_code] = _value

FINE_CODES: tuple[int, ...] = tuple(sorted(_TISSUE_OF))
TISSUE_OF = _TISSUE_OF

LABEL_LUT = np.zeros(256, dtype=np.uint8)
for _code, _value in _LABEL_OF.items():
    LABEL_LUT[_code] = _value

HERNIATION_LUT = np.zeros(256, dtype=bool)
for _d in range(len(L.LEVELS) + 1):
    HERNIATION_LUT[disc_herniation(_d)] = True

LABEL_VALUES: frozenset[int] = frozenset(int(v) for v in _LABEL_OF.values())
