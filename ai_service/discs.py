"""From segmentation classes to named discs: one 3D component per level, named by anatomy.

Levels are counted from the sacrum upward over the *vertebral bodies* (not the discs), so a disc the network
missed does not shift the names of the others, and a T12-L1 disc or a cut-off FOV simply yields fewer levels.
Two bodies the network joined (through a thin, dark disc it called bone) are counted as two: a disc found
between them cuts the component (:func:`_body_rows`).
All arrays are canonical ``(slices, rows, columns)`` (rows head→feet); naming works on any grid whose spacing is
given (the engine names on the network canvas, then maps the names to the input grid: :func:`discs_of`).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np
from scipy import ndimage

from ai_service.labels import LEVELS, disc_label

MIN_DISC_MM3 = 150.0
MIN_BODY_MM3 = 1500.0
MIN_SACRUM_MM3 = 800.0
MIN_BODY_SHARE = 0.25  # share of the median body volume a body needs to count, unless the field of view cuts it
MIN_SEPARATING_DISC = 0.5  # share of the median disc volume a disc needs to separate a body from the sacrum
MIN_CUT_SHARE = 0.2  # a disc splits a body component when at least this share of it lies on each side of it
SAME_BODY_OVERLAP = 0.5  # two body components whose sagittal outlines overlap by this share of the smaller are
# one vertebra split across slices (its middle slices called something else), not two
MIN_CUTTING_DISC = 0.1  # share of the median disc volume a disc needs to split a body component (a speck's
# mid-plane points anywhere; the remnant of a thin disc mostly called bone is still ~20 %)
_STRUCTURE = ndimage.generate_binary_structure(3, 1)


@dataclass
class NamedDisc:
    level: str
    mask: np.ndarray  # bool, canonical grid
    box: tuple[slice, slice, slice]  # bounding box of mask: per-disc work runs on mask[box], not the whole grid


@dataclass
class DiscAssignment:
    discs: list[NamedDisc]
    label_map: np.ndarray  # uint8, canonical grid, 201..205
    vertebrae: int
    sacrum_found: bool
    warnings: list[str]


@dataclass
class _Component:
    mask: np.ndarray  # bool, whole canonical grid
    centroid: np.ndarray  # (slice, row, col) pixels
    box: tuple[slice, ...]  # bounding box of mask
    voxels: int


def _components(mask: np.ndarray, min_voxels: float) -> list[_Component]:
    """Connected components at least ``min_voxels`` big (bincount + bounding boxes: one pass each)."""
    labelled, n = ndimage.label(mask, structure=_STRUCTURE)
    if n == 0:
        return []
    sizes = np.bincount(labelled.ravel(), minlength=n + 1)[1:]
    boxes = ndimage.find_objects(labelled)
    out = []
    for i in np.nonzero(sizes >= min_voxels)[0]:
        box = boxes[i]
        local = labelled[box] == i + 1
        full = np.zeros(mask.shape, dtype=bool)
        full[box] = local
        centroid = np.array([idx.mean() + b.start for idx, b in zip(np.nonzero(local), box)])
        out.append(_Component(full, centroid, box, int(sizes[i])))
    return out


def _contact(part: _Component, other: np.ndarray) -> int:
    """Voxels of ``other`` on the one-voxel shell around a component (computed inside its bounding box)."""
    box = tuple(slice(max(0, b.start - 1), b.stop + 1) for b in part.box)
    inside = part.mask[box]
    grown = ndimage.binary_dilation(inside, structure=_STRUCTURE)
    return int((grown & ~inside & other[box]).sum())


def _disc_plane(disc: _Component, spacing) -> tuple[np.ndarray, np.ndarray]:
    """A disc's mid-plane in the sagittal (row, column) mm plane: centre and unit normal pointing to the feet."""
    rr, cc = np.nonzero(disc.mask[disc.box].any(axis=0))
    pts = np.stack([(rr + disc.box[1].start) * spacing[1], (cc + disc.box[2].start) * spacing[2]], axis=1)
    centre = pts.mean(axis=0)
    cov = np.cov((pts - centre).T) if len(pts) > 2 else np.eye(2)
    normal = np.linalg.eigh(cov)[1][:, 0]  # across the disc: the direction of least spread
    return centre, normal if normal[0] > 0 else -normal


def _side_by_side_merged(bodies: list[_Component]) -> list[_Component]:
    """Bodies whose sagittal outlines (projections over slices) mostly overlap joined into one component.

    Pieces of one vertebra on different slices, with the slices between them called something else, lie on the
    same outline; two vertebrae (also the pieces a disc cuts, see :func:`_body_rows`) lie one above the other.
    """
    merged = list(bodies)
    while pair := next(((i, j) for i, j in combinations(range(len(merged)), 2)
                        if _one_outline(merged[i], merged[j])), None):
        i, j = pair
        merged[i] = _union(merged[i], merged.pop(j))  # j > i: index i is unchanged by the pop
    return merged


def _outline_box(a: _Component, b: _Component) -> tuple[slice, ...]:
    return tuple(slice(min(p.start, q.start), max(p.stop, q.stop)) for p, q in zip(a.box, b.box))


def _one_outline(a: _Component, b: _Component) -> bool:
    box = _outline_box(a, b)
    pa, pb = a.mask[box].any(axis=0), b.mask[box].any(axis=0)
    return (pa & pb).sum() >= SAME_BODY_OVERLAP * min(pa.sum(), pb.sum())


def _union(a: _Component, b: _Component) -> _Component:
    centroid = (a.centroid * a.voxels + b.centroid * b.voxels) / (a.voxels + b.voxels)
    return _Component(a.mask | b.mask, centroid, _outline_box(a, b), a.voxels + b.voxels)


def _body_rows(bodies: list[_Component], discs: list[_Component], spacing) -> list[float]:
    """Centroid rows of the vertebral bodies, a component cut in pieces by each disc that lies inside it.

    A disc cuts a body component when its centre row falls within the component and at least
    :data:`MIN_CUT_SHARE` of the component's voxels lie on each side of the disc's mid-plane: an ordinary body
    next to a disc has all but a sliver on one side, whatever the lordosis. Specks called disc (under
    :data:`MIN_CUTTING_DISC` of the median disc) cut nothing: the mid-plane of a speck inside a body can point
    anywhere and split it into two "vertebrae"; the caller leaves them out of ``discs``.
    """
    planes = [(float(d.centroid[1]), *_disc_plane(d, spacing)) for d in discs]
    rows = []
    for body in bodies:
        _, rr, cc = np.nonzero(body.mask[body.box])
        rr = rr + body.box[1].start
        pts = np.stack([rr * spacing[1], (cc + body.box[2].start) * spacing[2]], axis=1)
        piece = np.zeros(len(rr), dtype=np.int32)
        for row, centre, normal in planes:
            if not body.box[1].start < row < body.box[1].stop:
                continue
            below = (pts - centre) @ normal > 0
            if min(below.mean(), 1.0 - below.mean()) >= MIN_CUT_SHARE:
                piece += below
        rows += [float(rr[piece == k].mean()) for k in np.unique(piece)]
    return sorted(rows)


def assign_levels(classes: np.ndarray, spacing: tuple[float, float, float]) -> DiscAssignment:
    """Name disc components L1-L2 ... L5-S1 from a class map (0 bg, 1 disc, 2 body, 3 sacrum).

    The work runs inside the bounding box of the labelled voxels (the spine fills a fraction of the canvas, and
    component labelling costs with the voxels it scans); the result is on the whole grid.
    """
    ends = [np.nonzero(classes.any(axis=tuple(j for j in range(3) if j != i)))[0] for i in range(3)]
    if not len(ends[0]):
        return DiscAssignment([], np.zeros(classes.shape, dtype=np.uint8), 0, False,
                              ["sacrum not identified; levels counted assuming the lowest structure is at L5-S1"])
    crop = tuple(slice(int(e[0]), int(e[-1]) + 1) for e in ends)
    local = _assign_levels(classes[crop], spacing, (-crop[1].start, classes.shape[1] - crop[1].start))
    label_map = np.zeros(classes.shape, dtype=np.uint8)
    label_map[crop] = local.label_map
    discs = []
    for disc in local.discs:
        mask = np.zeros(classes.shape, dtype=bool)
        mask[crop] = disc.mask
        discs.append(NamedDisc(disc.level, mask, tuple(slice(b.start + c.start, b.stop + c.start)
                                                       for b, c in zip(disc.box, crop))))
    return DiscAssignment(discs, label_map, local.vertebrae, local.sacrum_found, local.warnings)


def _assign_levels(classes: np.ndarray, spacing: tuple[float, float, float], fov_rows: tuple[int, int]
                   ) -> DiscAssignment:
    """``fov_rows``: the field of view's first and end row in this (cropped) grid's coordinates."""
    voxel_mm3 = float(np.prod(spacing))
    discs = _components(classes == 1, MIN_DISC_MM3 / voxel_mm3)
    typical_disc = float(np.median([d.voxels for d in discs])) if discs else 0.0
    bodies = _side_by_side_merged(_components(classes == 2, MIN_BODY_MM3 / voxel_mm3))
    if bodies:
        # a scrap called bone (inside a disc, at an endplate) is not a vertebra; a body the field of view cuts is one
        typical = float(np.median([b.voxels for b in bodies]))
        bodies = [b for b in bodies if b.voxels >= MIN_BODY_SHARE * typical
                  or b.box[1].start <= fov_rows[0] or b.box[1].stop >= fov_rows[1]]
    sacra = _components(classes == 3, MIN_SACRUM_MM3 / voxel_mm3)
    warnings: list[str] = []
    sacrum_row = None
    if sacra:
        sacrum = max(sacra, key=lambda c: c.voxels)
        sacrum_row = float(sacrum.centroid[1])
        disc_mask = classes == 1
        disc_rows = [float(d.centroid[1]) for d in discs if d.voxels >= MIN_SEPARATING_DISC * typical_disc]
        # a "body" that touches the sacrum more than any disc, with no disc between them, is a piece of the
        # sacrum; L5 stays a body when sacrum voxels reach up beside it but the L5-S1 disc lies below it (a
        # whole disc: a speck called disc inside the sacrum separates nothing)
        bodies = [b for b in bodies
                  if b.centroid[1] < sacrum_row
                  and (_contact(b, sacrum.mask) <= _contact(b, disc_mask)
                       or any(b.centroid[1] < r < sacrum_row for r in disc_rows))]
    else:
        warnings.append("sacrum not identified; levels counted assuming the lowest structure is at L5-S1")
    body_rows = _body_rows(bodies, [d for d in discs if d.voxels >= MIN_CUTTING_DISC * typical_disc], spacing)

    named: dict[str, NamedDisc] = {}
    for disc in sorted(discs, key=lambda c: c.centroid[1]):
        mask = disc.mask
        row = float(disc.centroid[1])
        below = sum(1 for r in body_rows if r > row)
        if sacrum_row is not None:
            if row > sacrum_row:
                continue  # below the top of the sacrum: not a lumbar disc
            below += 1
        elif not any(r > row for r in body_rows):
            below = 1  # no body below: sits on the (unseen) sacrum
        else:
            below += 1
        index = len(LEVELS) - below
        if not 0 <= index < len(LEVELS):
            continue  # T12-L1 and above, never reported
        level = LEVELS[index]
        if level in named:  # one level split in two pieces: keep them together
            box = tuple(slice(min(a.start, b.start), max(a.stop, b.stop)) for a, b in zip(named[level].box, disc.box))
            named[level] = NamedDisc(level, named[level].mask | mask, box)
        else:
            named[level] = NamedDisc(level, mask, disc.box)

    label_map = np.zeros(classes.shape, dtype=np.uint8)
    ordered = [named[level] for level in LEVELS if level in named]
    for disc in ordered:
        label_map[disc.mask] = disc_label(disc.level)
    return DiscAssignment(ordered, label_map, len(body_rows), sacrum_row is not None, warnings)


def discs_of(label_map: np.ndarray) -> list[NamedDisc]:
    """The named discs of a label map (201…205), in level order: one pass for the boxes, masks built in them."""
    boxes = ndimage.find_objects(label_map)
    out = []
    for level in LEVELS:
        value = disc_label(level)
        box = boxes[value - 1] if value <= len(boxes) else None
        if box is None:
            continue
        mask = np.zeros(label_map.shape, dtype=bool)
        mask[box] = label_map[box] == value
        out.append(NamedDisc(level, mask, box))
    return out
