"""Paints one sagittal plane (at lateral offset r mm) into a fine-class map with cv2.fillPoly.

Painting order is the occlusion rule: body wall, soft tissues, posterior elements, canal, discs, herniated
material, then vertebral bodies last, so bodies cut the discs (no overlap) and the canal cuts the laminae.
Each structure's AP size shrinks with |r| following its axial cross-section.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from . import shapes, tissues as T
from .anatomy import Anatomy, Body, Disc


@dataclass(frozen=True)
class Grid:
    """In-plane raster: pixel (row i, col j) centre is at a = a0 + j*spacing, s = s0 + i*spacing (mm)."""

    rows: int
    cols: int
    a0: float
    s0: float
    spacing: float


class Canvas:
    """A fine-class map with mm -> sub-pixel polygon filling."""

    def __init__(self, grid: Grid):
        self.grid = grid
        self.map = np.zeros((grid.rows, grid.cols), dtype=np.uint8)
        self._origin = np.array([grid.a0, grid.s0])
        self._scale = 16.0 / grid.spacing
        self._limit = np.array([grid.cols, grid.rows]) * 16.0

    def fill(self, poly: np.ndarray, code: int) -> None:
        px = (poly - self._origin) * self._scale
        lo, hi = px.min(axis=0), px.max(axis=0)
        if (hi < -16).any() or (lo > self._limit).any():
            return
        cv2.fillPoly(self.map, [np.round(px).astype(np.int32)], int(code), cv2.LINE_8, 4)


def disc_outline(anat: Anatomy, d: Disc, r: float):
    """Disc polygon at lateral r (world mm), its posterior-margin local x and posterior height; None if absent."""
    rd = r - anat.lateral_shift(d.centre[1])
    fa, fp = shapes.lateral(rd, d.half_width, 2.0), shapes.lateral(rd, d.half_width, 3.0)
    if fa < 0.08:
        return None
    ant, post = d.ant * fa, d.post * fp
    lo, up = d.lower, d.upper
    ov_l, ov_u = lo.concavity + 0.8, up.concavity + 0.8
    rl, ru = shapes.rotation(lo.tilt), shapes.rotation(up.tilt)
    la = lo.centre + rl @ np.array([-ant, -lo.half_height + ov_l])
    lp = lo.centre + rl @ np.array([post, -lo.half_height + ov_l])
    ua = up.centre + ru @ np.array([-ant, up.half_height - ov_u])
    upp = up.centre + ru @ np.array([post, up.half_height - ov_u])
    pdir = shapes.posterior(d.tilt)
    out = 0.3 + d.bulge
    back = shapes.quad_bezier(lp, (lp + upp) / 2 + 2 * out * pdir, upp)
    front = shapes.quad_bezier(ua, (ua + la) / 2 - 1.2 * pdir, la)
    poly = np.concatenate([[la], back, front])
    margin = (lp + upp) / 2 + out * pdir - d.centre
    post_x = float(margin @ pdir)
    post_h = max(float(np.linalg.norm(upp - lp)) - ov_l - ov_u, 1.0)
    return poly, post_x, post_h, fa, fp


def _body(canvas: Canvas, b: Body, rb: float, kidney: float = 1.0) -> None:
    fa = shapes.lateral(rb, b.half_width, b.lateral_power)
    if fa < 0.08:
        return
    fp = shapes.lateral(rb, b.half_width, 3.0)
    hh = b.half_height * shapes.lateral(rb, b.half_width * 1.05, 8.0)
    ant, post = b.ant * fa, b.post * fp - kidney * np.exp(-(rb / 8.0) ** 2)
    conc = b.concavity * (1 - (rb / b.half_width) ** 2)
    canvas.fill(shapes.to_world(shapes.superellipse(ant, post, hh, hh, b.n, conc), b.centre, b.tilt), b.cortex)
    ct = 1.0
    if min(ant, post, hh) > 2 * ct:
        inner = shapes.superellipse(ant - ct, post - ct, hh - ct, hh - ct, b.n, conc)
        canvas.fill(shapes.to_world(inner, b.centre, b.tilt), b.marrow)


def _bone(canvas: Canvas, b: Body, cx: float, cy: float, hx: float, hy: float,
          n: float = 4.0) -> None:
    """A posterior-element block (cortex + marrow) in body b's local frame."""
    if hx < 0.4 or hy < 0.4:
        return
    pts = shapes.superellipse(hx, hx, hy, hy, n) + [cx, cy]
    canvas.fill(shapes.to_world(pts, b.centre, b.tilt), T.PE_CORTEX)
    if hx > 1.6 and hy > 1.6:
        pts = shapes.superellipse(hx - 1.0, hx - 1.0, hy - 1.0, hy - 1.0, n) + [cx, cy]
        canvas.fill(shapes.to_world(pts, b.centre, b.tilt), T.PE_MARROW)


def render(anat: Anatomy, grid: Grid, r: float) -> np.ndarray:
    """Fine-class map of the sagittal plane at lateral offset r (mm toward patient right)."""
    cv = Canvas(grid)
    c, w = anat.canal, anat.wall
    P, N, arc = c.points, c.normals, c.arc
    rr = r - anat.lateral_shift(P[:, 1])
    ar = np.abs(rr)

    def band(lo, hi, code, mask=None, line=None):
        pts, nrm = (P, N) if line is None else line
        lo = np.broadcast_to(lo, arc.shape)
        hi = np.broadcast_to(hi, arc.shape)
        ok = hi - lo > 0.05
        if mask is not None:
            ok &= mask
        for i0, i1 in shapes.runs(ok):
            if i1 - i0 < 2:
                continue
            p, n = pts[i0:i1], nrm[i0:i1]
            poly = np.concatenate([p + lo[i0:i1, None] * n, (p + hi[i0:i1, None] * n)[::-1]])
            cv.fill(poly, code)

    # --- body wall and soft tissues
    trunk = (w.points, w.normals)
    bulge = w.paraspinal_bulge * (1 - np.exp(-(rr / 25.0) ** 2))
    band(w.ant_skin, w.post_skin + bulge, T.SKIN, line=trunk)
    band(w.ant_skin + w.skin, w.post_skin + bulge - w.skin, T.SUBCUT_FAT, line=trunk)
    band(w.ant_fat, w.post_fat + bulge, T.MUSCLE, line=trunk)
    band(w.ant_fat + w.rectus, w.mid_body, T.ABDOMEN, line=trunk)
    band(-c.body_depth - 4.0, -c.body_depth * 0.5, T.PREVERTEBRAL, (ar < 30) & (arc < c.end_arc))
    band(-c.body_depth - 1.2, -c.body_depth + 1.0, T.ALL_LIGAMENT, (ar < 14) & (arc < c.end_arc))
    for (vr, lat, ap, end), code in ((w.aorta, T.VESSEL), (w.ivc, T.VESSEL)):
        f = shapes.lateral_array(rr - vr, lat) * np.sqrt(np.clip((end - arc) / 12.0, 0, 1))
        centre = -c.body_depth - 3.0 - ap
        band(centre - ap * f, centre + ap * f, code, f > 0.05)
    fps = shapes.lateral_array(ar - w.psoas_r, w.psoas_lat) * w.psoas_half
    band(-c.body_depth * 0.55 - fps, -c.body_depth * 0.55 + fps, T.PSOAS, fps > 0.3)

    # --- posterior elements (behind the canal) and ligaments between them
    band(c.wall - 0.5, c.wall + 3.0, T.FLAVUM, c.is_lumbar & (ar < 18))
    band(c.wall + 3.0, c.wall + 28.0, T.INTERSPINOUS, c.is_lumbar & (ar < 3.0))
    sac_wall = np.clip(10.0 - 0.04 * (arc - arc[c.is_sacral][0] if c.is_sacral.any() else 0), 3, 10)
    band(c.wall - 0.5, c.wall + sac_wall, T.PE_CORTEX, c.is_sacral & (ar < 38))
    band(c.wall + 0.5, c.wall + sac_wall - 1.0, T.PE_MARROW, c.is_sacral & (ar < 37))
    bodies = anat.bodies + anat.sacrum[:1]
    for i, (b, pe) in enumerate(zip(bodies, anat.pe)):
        rb = r - anat.lateral_shift(b.centre[1])
        arb, hh, xw = abs(rb), b.half_height, b.canal_wall
        if arb < 13 and b.name != "S1":
            f = shapes.lateral(rb, 13.0, 4.0)
            _bone(cv, b, xw + pe["lamina"] / 2 - 0.25, 0.22 * hh, (pe["lamina"] + 0.5) / 2 * f, 0.78 * hh)
        if arb < pe["spinous_hw"]:
            f = shapes.lateral(rb, pe["spinous_hw"], 4.0)
            L, hgt, dr = pe["spinous_len"], pe["spinous_h"] * f, pe["droop"]
            pts = shapes.superellipse(L / 2, L / 2, hgt / 2, hgt / 2, 3.0)
            rot = np.array([[np.cos(dr), -np.sin(dr)], [np.sin(dr), np.cos(dr)]])
            start = np.array([xw + pe["lamina"] * 0.4, 0.35 * hh])
            centre = start + (L / 2) * np.array([np.cos(dr), np.sin(dr)])
            cv.fill(shapes.to_world(pts @ rot.T + centre, b.centre, b.tilt), T.PE_CORTEX)
            if hgt > 3:
                inner = shapes.superellipse(L / 2 - 1, L / 2 - 1, hgt / 2 - 1, hgt / 2 - 1, 3.0)
                cv.fill(shapes.to_world(inner @ rot.T + centre, b.centre, b.tilt), T.PE_MARROW)
        if 6.0 < arb < 22.0 and b.name != "S1":
            f = shapes.lateral(arb - 14.0, 8.0, 2.0)
            above = anat.discs[i - 1].height * 0.4 if i > 0 else 2.0
            below = anat.discs[i].height * 0.4 if i < len(anat.discs) else 2.0
            y0, y1 = -hh - above, hh + below
            _bone(cv, b, xw + 3.0, (y0 + y1) / 2, 6.0 * max(f, 0.3), (y1 - y0) / 2, 5.0)
        tp0 = 18.0
        if tp0 < arb < tp0 + pe["tp_len"] and b.name not in ("S1",):
            f = shapes.lateral(arb - tp0 - pe["tp_len"] / 2, pe["tp_len"] / 2, 4.0)
            _bone(cv, b, b.post + 9.0, -0.15 * hh, 4.5, 5.0 * max(f, 0.2), 2.0)

    # --- canal: epidural fat / foramina, PLL, thecal sac, conus, cauda equina
    band(-1.0, c.wall, T.EPIDURAL_FAT, ((ar < c.bony_half_width) | (c.is_lumbar & (ar < 22.0))) & (arc < c.end_arc))
    band(0.0, 0.9, T.PLL, (ar < 11) & (arc < c.end_arc))
    f = shapes.lateral_array(rr, c.sac_half_width)
    mid = c.epi_ant + c.sac_depth / 2
    band(mid - c.sac_depth / 2 * f, mid + c.sac_depth / 2 * f, T.CSF, c.sac_depth > 0.3)
    taper = np.sqrt(np.clip((c.conus_tip - arc) / 25.0, 0, 1)) * shapes.lateral_array(rr, 4.5)
    half = c.conus_depth / 2 * taper
    cm = c.epi_ant + c.sac_depth * 0.52
    band(cm - half, cm + half, T.CONUS, (arc < c.conus_tip) & (c.sac_depth > 2))
    for sr, frac, th, start, end in c.strands:
        g = shapes.lateral(r - float(np.mean(anat.lateral_shift(P[:, 1]))) - sr, th, 2.0)
        if g <= 0.2:
            continue
        ctr = c.epi_ant + frac * c.sac_depth
        band(ctr - th / 2 * g, ctr + th / 2 * g, T.CAUDA, (arc > start) & (arc < end) & (c.sac_depth > 3))
    for b, pe in zip(anat.bodies, anat.pe):
        rb = abs(r - anat.lateral_shift(b.centre[1]))
        hh, xw = b.half_height, b.canal_wall
        f = shapes.lateral(rb - pe["pedicle_r"], pe["pedicle_hw"], 2.0)
        if f > 0.1:
            _bone(cv, b, (b.post * 0.6 + xw + 1.0) / 2, -0.35 * hh, (xw + 1.0 - b.post * 0.6) / 2,
                  0.5 * hh * (0.5 + 0.5 * f), 4.0)
        g = shapes.lateral(rb - pe["pedicle_r"] - 0.5, 3.5, 2.0)
        if g > 0.1:
            cv.fill(shapes.to_world(shapes.ellipse(2.2 * g, 2.6 * g, (b.post + xw) / 2 + 1.0, 0.5 * hh + 1.5),
                                    b.centre, b.tilt), T.ROOT)

    # --- discs, then herniated material (carries its disc's label), then the bodies
    outlines = {}
    for d in anat.discs:
        res = disc_outline(anat, d, r)
        if res is None:
            continue
        poly, post_x, post_h, fa, fp = res
        outlines[d.index] = (post_x, post_h, fp)
        cv.fill(poly, d.annulus)
        ry = d.height * (0.22 if d.degenerated else 0.4)
        rx = 0.72 * (d.ant * fa + d.post * fp) / 2 * (0.7 if d.degenerated else 1.0)
        cx = 0.1 * d.post * fp
        cv.fill(shapes.to_world(shapes.superellipse(rx, rx, ry, ry, 2.6), d.centre + [0, 0], d.tilt)
                + shapes.posterior(d.tilt) * cx, d.transition)
        cv.fill(shapes.to_world(shapes.ellipse(rx * 0.78, ry * 0.7, cx, 0.0), d.centre, d.tilt), d.nucleus)
        if not d.degenerated and d.height > 6:   # intranuclear cleft of the adult disc
            cv.fill(shapes.to_world(shapes.ellipse(rx * 0.7, 0.35, cx, 0.0), d.centre, d.tilt), d.transition)
    for h in anat.herniations:
        d = anat.disc_by_level(h.disc - 1)
        if d.index not in outlines:
            continue
        post_x, post_h, _ = outlines[d.index]
        g = shapes.lateral(r - anat.lateral_shift(d.centre[1]) - h.centre_r, h.half_width, 2.0)
        if g * h.size < 0.25:
            continue
        k = 0.55 + 0.45 * g
        pts = shapes.herniation_outline(post_x, h.size * g ** 0.6, h.base_half * post_h * k, h.tip_half * post_h * k,
                                        h.migration * k, h.power)
        cv.fill(shapes.to_world(pts, d.centre, d.tilt), d.herniation_code)
    for i, s in enumerate(anat.sacrum[:-1]):
        nxt = anat.sacrum[i + 1]
        rs = r - anat.lateral_shift(s.centre[1])
        fa = shapes.lateral(rs, nxt.half_width, 2.0)
        if fa > 0.1:
            a_, p_ = nxt.ant * fa, nxt.post * fa
            r1, r2 = shapes.rotation(s.tilt), shapes.rotation(nxt.tilt)
            quad = np.array([s.centre + r1 @ [-a_, s.half_height - 1], s.centre + r1 @ [p_, s.half_height - 1],
                             nxt.centre + r2 @ [p_, -nxt.half_height + 1],
                             nxt.centre + r2 @ [-a_, -nxt.half_height + 1]])
            cv.fill(quad, T.SACRAL_REMNANT)
    for b in anat.bodies + anat.sacrum:
        _body(cv, b, r - anat.lateral_shift(b.centre[1]), kidney=1.0 if b.name[0] != "S" else 0.0)
    return cv.map
