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

import cv2
import numpy as np
from scipy import ndimage

from ai_service.labels import LEVELS, disc_label

MIN_DISC_MM3 = 150.0
MIN_BODY_MM3 = 1500.0
MIN_SACRUM_MM3 = 800.0
SACRUM_PIECE_SHARE = 0.5  # a sacrum piece this share of the largest one, above it, is the top of the sacrum
MIN_BODY_SHARE = 0.25  # share of the median body volume a body needs to count, unless the field of view cuts it
MIN_SEPARATING_DISC = 0.5  # share of the median disc volume a disc needs to separate a body from the sacrum
MIN_CUT_SHARE = 0.2  # a disc splits a body component when at least this share of it lies on each side of it
SAME_BODY_OVERLAP = 0.5  # two body components whose sagittal outlines overlap by this share of the smaller are
# one vertebra split across slices (its middle slices called something else), not two
MIN_CUTTING_DISC = 0.1  # share of the median disc volume a disc needs to split a body component (a speck's
# mid-plane points anywhere; the remnant of a thin disc mostly called bone is still ~20 %)
SLAB_HALF_MM = 12.0  # levels are named on the slices this close to the spine's mid-sagittal plane
COLUMN_MM = 22.0  # a body or disc centre this far in front of or behind the column's line is not part of it
LATERAL_GROW_STEPS = 8  # in-slice growth steps (pixels) of a name carried to the next slice outward
MIN_ANALYSABLE_DISCS = 3  # fewer named discs than this: the exam is not analysable (levels cannot be trusted)
MAX_VOLUME_RATIO = 3.0  # a "disc" this many times the median one is a blob (e.g. bowel), not a disc
MIN_VOLUME_SHARE = 0.1  # ... and one under this share of it a speck (a small L5-S1 is often a third of the others)
MAX_SPACING_RATIO = 1.8  # neighbouring discs' centre distances may differ this much before the count is doubted
ONE_DISC_MM = 10.0  # disc pieces whose centres lie closer than this (head-feet) are one disc when cutting bodies
_STRUCTURE = ndimage.generate_binary_structure(3, 1)
_GROW_PX = np.ones((3, 3), np.uint8)


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
    anywhere and split it into two "vertebrae"; the caller leaves them out of ``discs``. Two pieces of one disc
    (centres within :data:`ONE_DISC_MM`) cut once: on a few central slices a disc may fall apart in two.
    """
    cutting: list[_Component] = []
    for d in sorted(discs, key=lambda c: -c.voxels):  # pieces of one disc (split on a few slices) cut once
        if all(abs(d.centroid[1] - k.centroid[1]) * spacing[1] >= ONE_DISC_MM for k in cutting):
            cutting.append(d)
    planes = [(float(d.centroid[1]), *_disc_plane(d, spacing)) for d in cutting]
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


def _on_the_column(bodies: list[_Component], discs: list[_Component], spacing
                   ) -> tuple[list[_Component], list[_Component]]:
    """Bodies and discs whose centres lie within :data:`COLUMN_MM` (anterior-posterior) of the vertebral column's
    line: a curve through the body centres (weighted by volume, fitted twice, the second time without the bodies
    the first fit left far off), so posterior elements and facet joints the network called bone or disc (behind
    the canal, seen on real exams) are not counted as vertebrae or named as discs."""
    if len(bodies) < 3:
        return bodies, discs

    def far(parts, fit) -> np.ndarray:
        rows = np.array([p.centroid[1] for p in parts]) * spacing[1]
        cols = np.array([p.centroid[2] for p in parts]) * spacing[2]
        return np.abs(cols - np.polyval(fit, rows)) > COLUMN_MM

    kept = bodies
    for _ in range(2):
        rows = np.array([b.centroid[1] for b in kept]) * spacing[1]
        cols = np.array([b.centroid[2] for b in kept]) * spacing[2]
        fit = np.polyfit(rows, cols, 2 if len(kept) >= 5 else 1, w=np.sqrt([b.voxels for b in kept]))
        kept = [b for b, off in zip(bodies, far(bodies, fit)) if not off]
        if len(kept) < 3:
            return bodies, discs
    return kept, ([d for d, off in zip(discs, far(discs, fit)) if not off] if discs else discs)


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
    local_classes = classes[crop]
    slab = central_slab(local_classes, spacing[0])
    central = np.zeros_like(local_classes)
    central[slab] = local_classes[slab]
    local = _assign_levels(central, spacing, (-crop[1].start, classes.shape[1] - crop[1].start))
    label_map = np.zeros(classes.shape, dtype=np.uint8)
    label_map[crop] = _grown_laterally(local.label_map, local_classes == 1, slab)
    return DiscAssignment(discs_of(label_map), label_map, local.vertebrae, local.sacrum_found, local.warnings)


def central_slab(classes: np.ndarray, slice_mm: float) -> slice:
    """The slices within :data:`SLAB_HALF_MM` of the spine's mid-sagittal plane (median slice of its bone).

    Why: lateral to the vertebral bodies the network meets pedicles, facet joints and psoas, and on thin slices
    (a 1 mm real exam has 60+) discs and bodies of different levels touch there, so 3D components joined whole
    spines into one body and two discs into one; in the central slab they stand apart as on a mid-sagittal view.
    """
    bone = np.count_nonzero((classes == 2) | (classes == 3), axis=(1, 2))
    if not bone.any():
        bone = np.count_nonzero(classes, axis=(1, 2))
    middle = int(np.searchsorted(np.cumsum(bone), bone.sum() / 2.0))
    reach = int(np.floor(SLAB_HALF_MM / slice_mm + 1e-6))
    return slice(max(0, middle - reach), min(len(classes), middle + reach + 1))


def _grown_laterally(named: np.ndarray, disc: np.ndarray, slab: slice) -> np.ndarray:
    """Names given in the central slab carried outward slice by slice over the voxels called disc: a voxel takes
    the name of the disc beside it on the slice nearer the middle (grown inside its own slice where the disc
    widens), so a lateral bridge between two discs is split where they meet, and a lateral speck touching no
    named disc stays unnamed."""
    out = named.copy()
    order = [(s, s - 1) for s in range(slab.stop, len(named))] + [(s, s + 1) for s in range(slab.start - 1, -1, -1)]
    for s, inner in order:
        seed = np.where(disc[s], cv2.dilate(out[inner], _GROW_PX), 0).astype(np.uint8)
        for _ in range(LATERAL_GROW_STEPS):
            grown = np.where(disc[s] & (seed == 0), cv2.dilate(seed, _GROW_PX), seed)
            if np.array_equal(grown, seed):
                break
            seed = grown
        out[s] = seed
    return out


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
    bodies, discs = _on_the_column(bodies, discs, spacing)
    sacra = _components(classes == 3, MIN_SACRUM_MM3 / voxel_mm3)
    warnings: list[str] = []
    sacrum_row = None
    if sacra:
        # the sacrum's top is what the count needs: with a residual S1-S2 disc the network splits the sacrum in
        # two like-sized pieces (vb2-17), and the larger lower one would make the S1 piece a lumbar body
        largest = max(c.voxels for c in sacra)
        sacrum = min((c for c in sacra if c.voxels >= SACRUM_PIECE_SHARE * largest), key=lambda c: c.centroid[1])
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


def anatomy_problem(named: DiscAssignment, spacing: tuple[float, float, float]) -> str | None:
    """Why these named discs cannot be a lumbar spine read right, or None: the check that stands between an exam
    the models cannot read (wrong region, a spine they miscount) and confident wrong levels.

    A lumbar series shows the discs L1-L2 … L5-S1 one below the other at a steady spacing (~25-45 mm centre to
    centre), each below a vertebral body, counted up from the sacrum; a field of view may cut the top ones. So:
    the sacrum found (without it the count is a guess: a thoracolumbar view would be named L1-L2 … L5-S1), at
    least :data:`MIN_ANALYSABLE_DISCS` discs of like size (:data:`MAX_VOLUME_RATIO`, :data:`MIN_VOLUME_SHARE`; a disc the view cuts is not compared), a body above every disc
    (but the top one, which the field of view may cut), no level missing between two found ones,
    and no gap between neighbours more than :data:`MAX_SPACING_RATIO` times another (a disc skipped or a speck
    counted as one).
    """
    discs = named.discs
    if not named.sacrum_found:
        return "the sacrum was not found, so the lumbar levels cannot be counted (field of view above the sacrum?)"
    if len(discs) < MIN_ANALYSABLE_DISCS:
        return (f"only {len(discs)} lumbar disc{'s' if len(discs) != 1 else ''} found, at least "
                f"{MIN_ANALYSABLE_DISCS} needed to name the levels (is this a sagittal lumbar spine series?)")
    if named.vertebrae < len(discs) - 1:  # the body above the top disc may lie outside the field of view
        return (f"{len(discs)} discs but only {named.vertebrae} vertebral bodies found: not a lumbar spine as the "
                "models know it")
    rows = discs[0].mask.shape[1]
    whole = [d for d in discs if d.box[1].start > 0 and d.box[1].stop < rows]  # the view cuts the others
    volumes = np.array([np.count_nonzero(d.mask[d.box]) for d in whole], dtype=float)
    if len(volumes) > 1 and (volumes.max() > MAX_VOLUME_RATIO * np.median(volumes)
                             or volumes.min() < MIN_VOLUME_SHARE * np.median(volumes)):
        return (f"disc sizes implausible ({' / '.join(f'{v * np.prod(spacing) / 1000:.1f}' for v in volumes)} ml): "
                "not a lumbar spine as the models know it")
    found = [LEVELS.index(d.level) for d in discs]
    missing = [LEVELS[i] for i in range(min(found), max(found) + 1) if i not in found]
    if missing:
        return f"disc {', '.join(missing)} not found between the others: the levels could not be counted reliably"
    centres = []
    for d in discs:
        _, rr, cc = np.nonzero(d.mask[d.box])
        centres.append(((rr.mean() + d.box[1].start) * spacing[1], (cc.mean() + d.box[2].start) * spacing[2]))
    gaps = np.hypot(*np.diff(np.array(centres), axis=0).T)
    if len(gaps) > 1 and gaps.max() > MAX_SPACING_RATIO * gaps.min():
        return (f"disc spacing irregular ({' / '.join(f'{g:.0f}' for g in gaps)} mm between neighbours): the levels "
                "could not be counted reliably")
    return None


def unread_levels(named: DiscAssignment) -> list[str]:
    """Warnings for an analysable exam whose L5-S1 was not found although the sacrum was: the levels above were
    counted through the L5 body, so they stand, but a report without the commonest herniation level must say it
    is missing rather than read as complete."""
    if named.sacrum_found and named.discs and LEVELS[-1] not in {d.level for d in named.discs}:
        return [f"disc {LEVELS[-1]} not found above the sacrum: that level is not read"]
    return []


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
