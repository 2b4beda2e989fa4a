"""Label values and disc level names: the one place both the phantom and the models read them from.

The label map convention (``labels.mha`` from ``ldh phantom``, ``discs.mha`` from ``ldh analyze``):

=====  ==========================================
value  structure
=====  ==========================================
0      air / background outside the body
1      subcutaneous fat
2      muscle (paraspinal, psoas)
3      other soft tissue (prevertebral, abdominal)
4      CSF in the spinal canal
5      cauda equina / conus (nerve roots)
6      posterior elements (pedicles, laminae, spinous processes)
7      epidural fat / ligamentum flavum
99     thoracic vertebral bodies above T12 (T10, T11)
100    T12 vertebral body
101-105  L1 ... L5 vertebral bodies
106    sacrum (S1 and below)
199    thoracic discs above T12-L1 (T10-T11, T11-T12; segmented, never reported)
200    T12-L1 disc (segmented, never reported)
201-205  L1-L2 ... L5-S1 discs (herniated material belongs to its disc)
=====  ==========================================
"""

from __future__ import annotations

LEVELS: tuple[str, ...] = ("L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1")

AIR, FAT, MUSCLE, SOFT_TISSUE, CSF, NERVE, POSTERIOR_ELEMENTS, EPIDURAL = 0, 1, 2, 3, 4, 5, 6, 7
UPPER_VERTEBRA = 99  # T10/T11: bodies like any other, so a model must count from the sacrum, not the top
VERTEBRA_T12 = 100
VERTEBRAE: tuple[str, ...] = ("T12", "L1", "L2", "L3", "L4", "L5", "S1")
SACRUM = 106
UPPER_DISC = 199
DISC_T12_L1 = 200
DISC_BASE = 200  # disc label = DISC_BASE + 1 + level index


def disc_label(level: str) -> int:
    """Label value of a reported disc level (L1-L2 -> 201 ... L5-S1 -> 205)."""
    return DISC_BASE + 1 + LEVELS.index(level)


def level_of_label(value: int) -> str | None:
    """Inverse of :func:`disc_label`; None for anything that is not a reported disc."""
    index = int(value) - DISC_BASE - 1
    return LEVELS[index] if 0 <= index < len(LEVELS) else None


def vertebra_label(name: str) -> int:
    """Label value of a vertebral body (T12 -> 100 ... L5 -> 105, S1 -> 106 = sacrum)."""
    return VERTEBRA_T12 + VERTEBRAE.index(name)


def is_disc(value: int) -> bool:
    return UPPER_DISC <= int(value) <= DISC_BASE + len(LEVELS)


def is_vertebra(value: int) -> bool:
    return UPPER_VERTEBRA <= int(value) <= SACRUM
