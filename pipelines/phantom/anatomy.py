"""One synthetic patient's lumbar anatomy in physical mm, sampled from a profile.

Bodies are rigid rounded rectangles chained from the sacrum upward along a lordotic curve (the lordosis lives
in the disc wedges); the canal, skin and other soft tissues are tubes offset from the posterior vertebral
margin line, so everything follows the same curve. Lateral coordinate r is mm toward patient RIGHT.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import shapes, tissues
from .profile import PhantomProfile

# Names above T12 have no label of their own (see tissues.py); S1 is the top sacral segment.
BODY_NAMES = ("T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5")
_HEIGHT = (21.0, 22.0, 23.0, 25.0, 26.5, 27.0, 27.0, 26.0)
_DEPTH = (27.0, 27.5, 28.5, 30.5, 32.0, 33.5, 34.5, 34.5)
_HALF_WIDTH = (17.0, 18.0, 19.5, 21.0, 22.0, 23.5, 24.5, 25.5)
_DISC_HEIGHT = (5.0, 5.5, 6.0, 8.0, 9.0, 10.0, 11.0, 10.5)  # T10-T11 ... L5-S1
_LORDOSIS_SHARE = (0.08, 0.13, 0.18, 0.26, 0.35)            # L1-L2 ... L5-S1


@dataclass
class Body:
    """A vertebral body or sacral segment (rigid)."""

    name: str
    centre: np.ndarray
    tilt: float
    half_height: float
    ant: float           # midline half-depths from the centre
    post: float
    half_width: float    # lateral (across slices)
    concavity: float
    cortex: int          # fine classes
    marrow: int
    lateral_power: float = 2.0
    n: float = 5.0
    canal_wall: float = 0.0   # local x of the bony canal's posterior wall (set once the canal exists)


@dataclass
class Disc:
    """The gap between two bodies; index -2/-1 = T10-T11/T11-T12, 0 = T12-L1 ... 5 = L5-S1."""

    index: int
    upper: Body
    lower: Body
    tilt: float
    centre: np.ndarray
    height: float
    ant: float
    post: float
    half_width: float
    bulge: float
    degenerated: bool
    annulus: int
    nucleus: int
    herniation_code: int
    transition: int


@dataclass
class Herniation:
    disc: int                 # 1..5 (L1-L2 ... L5-S1), index into Anatomy.discs by level
    side: str                 # central / left / right (patient sides)
    centre_r: float           # lateral centre, mm toward patient right
    half_width: float
    size: float               # mm beyond the posterior disc margin
    base_half: float          # neck half-height, fraction of posterior disc height
    tip_half: float           # dome half-height, fraction of posterior disc height
    migration: float          # mm, positive = inferior
    power: float
    kind: str = "protrusion"  # or "extrusion" (dome wider than the neck)


@dataclass
class Canal:
    """Posterior vertebral margin line (top -> bottom) and the tubes offset from it along its normals."""

    points: np.ndarray        # (N, 2) a, s
    normals: np.ndarray       # (N, 2) toward posterior
    arc: np.ndarray           # (N,) mm from the top
    epi_ant: np.ndarray       # anterior epidural space
    sac_depth: np.ndarray     # thecal sac AP depth (0 below the dural sac end)
    wall: np.ndarray          # offset of the bony canal's posterior wall
    body_depth: np.ndarray    # offset back to the anterior vertebral margin
    sac_half_width: float
    bony_half_width: float
    conus_tip: float          # arc position of the conus tip
    conus_depth: float
    strands: list[tuple[float, float, float, float, float]]  # r, fraction of sac depth, thickness, start, end
    is_sacral: np.ndarray     # posterior wall is sacral bone
    is_lumbar: np.ndarray     # flavum / facets / foramina exist
    end_arc: float            # the canal ends at the sacral tip


@dataclass
class Wall:
    """Body wall, as offsets along the normals of a smooth trunk line (the skin does not follow the sacrum)."""

    points: np.ndarray        # trunk line (N, 2), index-aligned with the canal line
    normals: np.ndarray
    post_skin: np.ndarray
    post_fat: np.ndarray      # inner boundary of the posterior subcutaneous fat
    ant_skin: np.ndarray
    ant_fat: np.ndarray       # inner boundary of the anterior subcutaneous fat
    mid_body: np.ndarray      # the vertebral bodies' mid-depth (abdomen behind it is muscle)
    rectus: float
    skin: float
    paraspinal_bulge: float
    psoas_half: np.ndarray    # AP half-thickness of psoas along the canal
    psoas_r: float
    psoas_lat: float
    aorta: tuple[float, float, float, float]  # r, lateral radius, AP radius, arc end
    ivc: tuple[float, float, float, float]


@dataclass
class Anatomy:
    bodies: list[Body]            # T10 ... L5 (top -> bottom)
    sacrum: list[Body]            # S1 ... S5
    discs: list[Disc]             # T10-T11 ... L5-S1 (top -> bottom)
    canal: Canal
    wall: Wall
    lordosis_deg: float
    sacral_slope_deg: float
    yaw: float                    # radians: lateral drift of the spine per mm of s
    s_ref: float
    pe: list[dict]                # posterior-element parameters per body (aligned with bodies)
    herniations: list[Herniation] = field(default_factory=list)

    def disc_by_level(self, level_index: int) -> Disc:
        """level_index 0 = L1-L2 ... 4 = L5-S1."""
        return self.discs[3 + level_index]

    def lateral_shift(self, s: float | np.ndarray) -> float | np.ndarray:
        """Patient-right offset of the spine's midplane at height s (a slightly rotated patient)."""
        return (np.asarray(s) - self.s_ref) * self.yaw


def _u(rng: np.random.Generator, rng_pair) -> float:
    return float(rng.uniform(*rng_pair))


def sample_anatomy(rng: np.random.Generator, profile: PhantomProfile) -> Anatomy:
    """Draw one patient: sizes, curve, degeneration, canal and body wall."""
    k = _u(rng, profile.body_scale)
    kd = k * float(rng.uniform(0.94, 1.06))
    disc_k = _u(rng, profile.disc_scale)
    lordosis = _u(rng, profile.lordosis_deg)
    slope = np.deg2rad(_u(rng, profile.sacral_slope_deg))
    conc = float(rng.uniform(0.3, 1.4))

    # --- sacrum: S1 top endplate centre at the origin, then S2.. curving posteriorly
    sacrum: list[Body] = []
    top, tilt = np.zeros(2), slope
    h, depth, hw = 27.0 * k, 37.0 * kd, 44.0 * k
    for i in range(5):
        body_h = h * (0.78 ** i) * float(rng.uniform(0.95, 1.05))
        d = depth * (0.8 ** i)
        centre = top - shapes.up(tilt) * body_h / 2
        marrow = tissues.vertebra_marrow(6) if i == 0 else tissues.sacral_segment_marrow(i)
        sacrum.append(Body(f"S{i + 1}", centre, tilt, body_h / 2, d / 2 * (1.05 if i == 0 else 1.0), d / 2,
                           hw * (0.8 ** i), conc * 0.5 if i == 0 else 0.0, tissues.vertebra_cortex(6), marrow,
                           n=4.0 if i == 0 else 3.0))
        gap = float(rng.uniform(2.0, 3.5)) * (0.7 ** i)
        top = top - shapes.up(tilt) * (body_h + gap)
        tilt += np.deg2rad(rng.uniform(7.0, 15.0))

    # --- lumbar and lower thoracic bodies, chained upward through the disc wedges
    degenerated = [bool(rng.random() < p) for p in profile.degeneration_prob]   # T12-L1 ... L5-S1
    wedges = [float(rng.uniform(-4.0, 0.0)), float(rng.uniform(-4.0, 0.0)), float(rng.uniform(-3.0, 2.0))]
    share = np.asarray(_LORDOSIS_SHARE) * rng.uniform(0.75, 1.25, size=5)
    wedges += list(lordosis * share / share.sum())                               # T10-T11 ... L5-S1
    bodies_rev: list[Body] = []
    discs_rev: list[tuple] = []
    low_top, low_tilt = np.zeros(2), slope
    lower = sacrum[0]
    for j in range(len(BODY_NAMES) - 1, -1, -1):                                 # L5 ... T10
        di = j - 2                                                               # disc below body j
        degen = degenerated[di] if di >= 0 else False
        dh = _DISC_HEIGHT[j] * disc_k * float(rng.uniform(0.92, 1.08))
        if degen:
            dh *= float(rng.uniform(0.4, 0.75))
        w = np.deg2rad(wedges[j] * (0.7 if degen else 1.0))
        disc_tilt = low_tilt - w / 2
        bottom = low_top + shapes.up(disc_tilt) * dh
        body_tilt = low_tilt - w + np.deg2rad(rng.normal(0.0, 1.2))
        bh = _HEIGHT[j] * k * float(rng.uniform(0.95, 1.05))
        bd = _DEPTH[j] * kd * float(rng.uniform(0.96, 1.04))
        centre = bottom + shapes.up(body_tilt) * bh / 2
        name = BODY_NAMES[j]
        if j >= 2:
            v = j - 2
            cortex, marrow = tissues.vertebra_cortex(v), tissues.vertebra_marrow(v)
        else:
            cortex, marrow = tissues.UPPER_CORTEX, tissues.UPPER_MARROW
        body = Body(name, centre, body_tilt, bh / 2, bd / 2, bd / 2, _HALF_WIDTH[j] * k,
                    conc * float(rng.uniform(0.7, 1.3)), cortex, marrow)
        discs_rev.append((di, body, lower, disc_tilt, (low_top + bottom) / 2, dh, degen))
        bodies_rev.append(body)
        lower = body
        low_top, low_tilt = bottom + shapes.up(body_tilt) * bh, body_tilt
    bodies = bodies_rev[::-1]

    discs: list[Disc] = []
    for di, upper, low, dtilt, centre, dh, degen in discs_rev[::-1]:
        ant = min(upper.ant, low.ant) * float(rng.uniform(0.98, 1.04))
        post = min(upper.post, low.post)
        bulge = float(rng.uniform(0.0, profile.bulge_max_mm)) if rng.random() < 0.5 + 0.4 * degen else 0.0
        if di >= 0:
            codes = (tissues.disc_annulus(di), tissues.disc_nucleus(di), tissues.disc_herniation(di),
                     tissues.disc_transition(di))
        else:
            codes = tissues.UPPER_ANNULUS, tissues.UPPER_NUCLEUS, tissues.UPPER_NUCLEUS, tissues.UPPER_ANNULUS
        discs.append(Disc(di, upper, low, dtilt, centre, dh, ant, post,
                          min(upper.half_width, low.half_width) * 1.03, bulge, degen, *codes))

    # --- rotate the whole spine so the T12-S1 chord leans by the global tilt
    chord = bodies[2].centre - np.zeros(2)
    angle = np.arctan2(-chord[0], -chord[1])
    delta = np.deg2rad(_u(rng, profile.global_tilt_deg)) - angle
    rot = shapes.rotation(delta)
    for b in bodies + sacrum:
        b.centre, b.tilt = rot @ b.centre, b.tilt + delta
    for d in discs:
        d.centre, d.tilt = rot @ d.centre, d.tilt + delta

    canal = _sample_canal(rng, bodies, sacrum, discs)
    wall = _sample_wall(rng, profile, canal, bodies)
    pe = _sample_posterior_elements(rng, bodies, sacrum, canal)
    yaw = np.tan(np.deg2rad(_u(rng, profile.yaw_deg)))
    return Anatomy(bodies, sacrum, discs, canal, wall, lordosis, float(np.rad2deg(slope)), float(yaw),
                   float(bodies[5].centre[1]), pe)


def _polyline(bodies: list[Body], sacrum: list[Body], discs: list[Disc]) -> tuple[np.ndarray, ...]:
    """Posterior vertebral margin at midline, smoothed and resampled every 1.5 mm, extended far both ways."""
    pts = []
    for i, b in enumerate(bodies):
        for y in (-0.6, 0.0, 0.6):
            pts.append(b.centre + shapes.rotation(b.tilt) @ np.array([b.post, y * b.half_height]))
        d = discs[i]
        pts.append(d.centre + shapes.posterior(d.tilt) * d.post)
    for b in sacrum[:4]:
        for y in (-0.5, 0.0, 0.5):
            pts.append(b.centre + shapes.rotation(b.tilt) @ np.array([b.post, y * b.half_height]))
    pts = np.asarray(pts)
    chord = bodies[2].centre - sacrum[0].centre
    chord /= np.linalg.norm(chord)
    first, last = pts[0] + shapes.up(bodies[0].tilt) * 250.0, pts[-1] - chord * 250.0
    pts = np.concatenate([[first], pts, [last]])
    seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    arc = np.concatenate([[0.0], np.cumsum(seg)])
    grid = np.arange(0.0, arc[-1], 1.5)
    line = np.stack([np.interp(grid, arc, pts[:, 0]), np.interp(grid, arc, pts[:, 1])], axis=1)
    from scipy.ndimage import gaussian_filter1d
    line = gaussian_filter1d(line, 4.0, axis=0, mode="nearest")
    tangent = np.gradient(line, axis=0)
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
    normals = np.stack([tangent[:, 1], -tangent[:, 0]], axis=1)
    seg = np.linalg.norm(np.diff(line, axis=0), axis=1)
    return line, normals, np.concatenate([[0.0], np.cumsum(seg)])


def nearest(points: np.ndarray, p: np.ndarray) -> int:
    return int(np.argmin(np.sum((points - p) ** 2, axis=1)))


def _sample_canal(rng, bodies, sacrum, discs) -> Canal:
    line, normals, arc = _polyline(bodies, sacrum, discs)

    def at(b: Body) -> float:
        return float(arc[nearest(line, b.centre + shapes.posterior(b.tilt) * b.post)])

    names = [b.name for b in bodies] + [s.name for s in sacrum]
    stops = np.array([at(b) for b in bodies + sacrum])
    sac = np.array([13.0, 14.0, 15.0, 15.5, 15.5, 15.0, 13.5, 12.0, 8.0, 0.0, 0.0, 0.0, 0.0])
    sac = sac[: len(stops)] * float(rng.uniform(0.8, 1.15))
    sac[names.index("S2"):] = 0.0
    epi = np.array([1.0, 1.0, 1.0, 0.8, 0.8, 1.0, 1.5, 3.0, 5.0, 4.0, 3.0, 2.0, 1.5])[: len(stops)]
    epi = epi * float(rng.uniform(0.7, 1.6))
    post_fat = np.full(len(stops), float(rng.uniform(1.5, 4.5)))
    post_fat[names.index("S2"):] = np.array([7.0, 5.0, 3.5, 2.5])[: len(stops) - names.index("S2")]
    end_s2 = stops[names.index("S2")] - 6.0 + float(rng.uniform(-4.0, 4.0))
    sac_i = np.interp(arc, np.concatenate([stops[:-4], [end_s2, end_s2 + 1]]), np.concatenate([sac[:-4], [0, 0]]))
    sac_i[arc < stops[0]] = sac[0]
    epi_i = np.interp(arc, stops, epi)
    wall = epi_i + sac_i + np.interp(arc, stops, post_fat)
    depth = np.interp(arc, stops, [b.ant + b.post for b in bodies + sacrum])
    l1, l2 = stops[3], stops[4]
    conus_tip = float(l1 + (l2 - l1) * rng.uniform(-0.4, 0.8))
    hw = float(rng.uniform(8.0, 11.0))
    strands = []
    for _ in range(int(rng.integers(6, 11))):
        strands.append((float(rng.uniform(-0.7, 0.7) * hw), float(rng.uniform(0.35, 0.85)),
                        float(rng.uniform(0.8, 1.6)), conus_tip - 5.0,
                        float(rng.uniform(stops[4], stops[names.index("S2")]))))
    is_sacral = (arc > stops[names.index("S1")] - sacrum[0].half_height * 0.8) & (arc < stops[-1] + 4.0)
    is_lumbar = (arc > stops[0] - 60) & (arc < stops[names.index("S1")] - sacrum[0].half_height * 0.8)
    return Canal(line, normals, arc, epi_i, sac_i, wall, depth, hw, hw + float(rng.uniform(2.5, 4.5)),
                 conus_tip, float(rng.uniform(6.5, 9.0)), strands, is_sacral, is_lumbar, float(stops[-1] + 6.0))


def _sample_wall(rng, profile: PhantomProfile, canal: Canal, bodies: list[Body]) -> Wall:
    from scipy.ndimage import gaussian_filter1d, maximum_filter1d, minimum_filter1d

    arc = canal.arc
    trunk = gaussian_filter1d(canal.points, 30.0, axis=0, mode="nearest")
    tangent = np.gradient(trunk, axis=0)
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
    normals = np.stack([tangent[:, 1], -tangent[:, 0]], axis=1)
    margin = np.sum((canal.points - trunk) * normals, axis=1)     # posterior vertebral margin, trunk frame
    fat0 = _u(rng, profile.subcut_fat_mm)
    wobble = 1.0 + 0.25 * np.sin(arc / float(rng.uniform(60, 140)) + rng.uniform(0, 6.3))
    l5 = canal.arc[nearest(canal.points, bodies[-1].centre)]
    fat = fat0 * wobble + np.clip((arc - l5) / 60.0, 0, 1) * float(rng.uniform(0, 20))   # buttocks
    back = margin + canal.wall + float(rng.uniform(24.0, 36.0))
    back = gaussian_filter1d(maximum_filter1d(back, 41), 12.0)
    skin = float(rng.uniform(1.2, 2.5))
    front = gaussian_filter1d(minimum_filter1d(margin - canal.body_depth, 41), 12.0)
    abdomen = _u(rng, profile.abdomen_depth_mm) + 0.2 * np.clip(arc - l5, -100, 150) * float(rng.uniform(-0.5, 1.0))
    ant_skin = front - np.maximum(abdomen, 60.0)
    ant_fat = ant_skin + skin + fat0 * float(rng.uniform(0.7, 1.6))
    l1 = canal.arc[nearest(canal.points, bodies[3].centre)]
    l4 = canal.arc[nearest(canal.points, bodies[6].centre)]
    psoas = np.clip((arc - l1 + 20) / (l4 - l1 + 20), 0, 1.3) * float(rng.uniform(14, 24))
    psoas[arc > l5 + 60] = 0
    aorta = (-float(rng.uniform(4, 14)), float(rng.uniform(9, 13)), float(rng.uniform(9, 13)),
             float(l4 + rng.uniform(-10, 15)))
    ivc = (float(rng.uniform(14, 24)), float(rng.uniform(10, 15)), float(rng.uniform(6, 11)),
           float(l5 + rng.uniform(-5, 15)))
    return Wall(trunk, normals, back + fat + skin, back, ant_skin, ant_fat, margin - canal.body_depth * 0.5,
                float(rng.uniform(7, 13)), skin, float(rng.uniform(6, 16)), psoas, float(rng.uniform(28, 38)),
                float(rng.uniform(14, 22)), aorta, ivc)


def _sample_posterior_elements(rng, bodies: list[Body], sacrum: list[Body], canal: Canal) -> list[dict]:
    """Lamina, spinous process, articular pillar, pedicle and transverse process sizes per vertebra."""
    out = []
    for b in bodies + sacrum[:1]:
        i = nearest(canal.points, b.centre + shapes.posterior(b.tilt) * b.post)
        b.canal_wall = b.post + float(canal.wall[i])
        out.append({
            "lamina": float(rng.uniform(5.0, 8.0)),
            "spinous_len": float(rng.uniform(22.0, 34.0)) * (0.6 if b.name == "S1" else 1.0),
            "spinous_h": float(rng.uniform(8.0, 13.0)),
            "droop": float(np.deg2rad(rng.uniform(5.0, 28.0))),
            "spinous_hw": float(rng.uniform(3.0, 5.0)),
            "pedicle_r": canal.bony_half_width + float(rng.uniform(2.5, 5.0)),
            "pedicle_hw": float(rng.uniform(3.5, 5.0)),
            "tp_len": float(rng.uniform(12, 30)),
        })
    return out
