"""Distribution parameters of the phantom population and scanner, so a shifted domain is one object away.

Every random choice the generator makes is drawn from a range held here; nothing else in the package hides a
magic range that a domain-shift experiment would need to change.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Mapping

Range = tuple[float, float]

# T2-weighted TSE prior of each tissue's mean signal (relative units, CSF = 1). Fat is bright on TSE.
T2_TSE_PRIORS: Mapping[str, float] = MappingProxyType({
    "air": 0.0, "skin": 0.45, "fat": 0.85, "muscle": 0.2, "abdomen": 0.38, "soft": 0.32, "vessel": 0.07,
    "ligament": 0.07, "csf": 1.0, "nerve": 0.3, "cortex": 0.06, "marrow": 0.45, "pe_marrow": 0.38,
    "sacral_marrow": 0.5, "epi_fat": 0.78, "annulus": 0.16, "nucleus": 0.82,
})

# A fat-suppressed T2 (a different site's protocol): fat and fatty marrow dark, fluid brighter relative.
FATSAT_T2_PRIORS: Mapping[str, float] = MappingProxyType({
    "air": 0.0, "skin": 0.3, "fat": 0.12, "muscle": 0.18, "abdomen": 0.3, "soft": 0.28, "vessel": 0.1,
    "ligament": 0.06, "csf": 1.0, "nerve": 0.35, "cortex": 0.05, "marrow": 0.16, "pe_marrow": 0.14,
    "sacral_marrow": 0.15, "epi_fat": 0.15, "annulus": 0.15, "nucleus": 0.9,
})

# Relative amplitude of each tissue's texture (bowel is heterogeneous, CSF nearly flat).
TEXTURE: Mapping[str, float] = MappingProxyType({
    "air": 0.0, "skin": 0.08, "fat": 0.06, "muscle": 0.12, "abdomen": 0.45, "soft": 0.15, "vessel": 0.2,
    "ligament": 0.1, "csf": 0.03, "nerve": 0.08, "cortex": 0.1, "marrow": 0.14, "pe_marrow": 0.14,
    "sacral_marrow": 0.16, "epi_fat": 0.1, "annulus": 0.08, "nucleus": 0.06,
})


@dataclass(frozen=True)
class PhantomProfile:
    """One domain: population anatomy, herniation shapes, scanner geometry and image formation ranges.

    Ranges are ``(low, high)`` for uniform draws unless said otherwise; lengths are mm, angles degrees.
    """

    name: str = "default"
    # --- scanner geometry
    slices: tuple[int, int] = (11, 19)
    matrix: tuple[int, int] = (256, 512)
    fov_mm: Range = (240.0, 360.0)
    pixel_spacing: Range = (0.5, 1.0)
    rectangular_prob: float = 0.25          # columns (AP) fewer than rows
    slice_thickness: Range = (3.0, 5.0)
    slice_gap_fraction: Range = (0.0, 0.15)
    max_slice_spacing: float = 5.0
    lateral_offset_mm: Range = (-2.5, 2.5)  # mid-sagittal plane vs the middle slice
    sub_slices: int = 3                     # through-slice partial volume
    # top FOV edge: inside T10/T11 (T12 whole), T12 (cut), L1 (T12 absent), L2 (L1-L2 absent)
    fov_top_probs: Mapping[str, float] = field(default_factory=lambda: MappingProxyType(
        {"T10": 0.15, "T11": 0.4, "T12": 0.25, "L1": 0.15, "L2": 0.05}))
    # --- image formation
    snr: Range = (8.0, 40.0)
    psf_sigma_px: Range = (0.3, 0.9)
    bias_log_std: Range = (0.05, 0.25)      # smooth random multiplicative field (log units)
    coil_gradient: Range = (0.1, 0.9)       # posterior spine coil: log gain across the AP field
    intensity_priors: Mapping[str, float] = field(default_factory=lambda: T2_TSE_PRIORS)
    intensity_jitter: float = 0.18          # log-normal sigma around the prior
    random_contrast_prob: float = 0.3       # SynthSeg-style: all tissue means uniform at random
    texture: Mapping[str, float] = field(default_factory=lambda: TEXTURE)
    texture_scale: Range = (0.6, 1.4)
    max_value: Range = (1400.0, 4000.0)     # stored value of the brightest tissue
    # --- population anatomy
    body_scale: Range = (0.88, 1.12)
    disc_scale: Range = (0.8, 1.2)
    lordosis_deg: Range = (20.0, 60.0)
    sacral_slope_deg: Range = (25.0, 50.0)
    global_tilt_deg: Range = (-8.0, 8.0)
    yaw_deg: Range = (-2.0, 2.0)            # spine not quite in the sagittal plane
    degeneration_prob: tuple[float, ...] = (0.05, 0.08, 0.12, 0.2, 0.3, 0.3)  # T12-L1 ... L5-S1
    bulge_max_mm: float = 1.5               # diffuse posterior bulge, a confounder, not a herniation
    subcut_fat_mm: Range = (6.0, 45.0)
    abdomen_depth_mm: Range = (90.0, 200.0)
    # --- herniations (the per-level rate is an argument of generate_case)
    herniation_size_mm: Range = (2.0, 8.0)  # beyond the posterior disc margin
    herniation_side_probs: Mapping[str, float] = field(default_factory=lambda: MappingProxyType(
        {"central": 0.4, "left": 0.3, "right": 0.3}))
    herniation_half_width_mm: Range = (4.0, 9.0)  # lateral extent (across slices)
    paracentral_offset_mm: Range = (4.5, 10.0)
    extrusion_prob: float = 0.2             # neck narrower than the dome
    migration_mm: Range = (0.0, 3.0)
    migration_prob: float = 0.3

    def with_(self, **changes) -> "PhantomProfile":
        """A copy with some fields changed (for experiments)."""
        return replace(self, **changes)


DEFAULT = PhantomProfile()

SHIFTED = PhantomProfile(
    name="shifted",
    slice_thickness=(4.0, 6.0),
    max_slice_spacing=6.5,
    slices=(11, 15),
    snr=(4.0, 14.0),
    psf_sigma_px=(0.6, 1.4),
    bias_log_std=(0.15, 0.4),
    coil_gradient=(0.5, 1.4),
    intensity_priors=FATSAT_T2_PRIORS,
    intensity_jitter=0.25,
    random_contrast_prob=0.1,
    lordosis_deg=(10.0, 70.0),
    herniation_size_mm=(3.0, 10.0),
    herniation_half_width_mm=(3.5, 8.0),
    extrusion_prob=0.65,
    migration_mm=(2.0, 9.0),
    migration_prob=0.6,
)

PROFILES: Mapping[str, PhantomProfile] = MappingProxyType({"default": DEFAULT, "shifted": SHIFTED})


def resolve_profile(profile: "str | PhantomProfile") -> PhantomProfile:
    """Name or object -> profile, with a clear error for unknown names."""
    if isinstance(profile, PhantomProfile):
        return profile
    try:
        return PROFILES[profile]
    except KeyError:
        raise ValueError(f"unknown phantom profile {profile!r}; expected one of {', '.join(PROFILES)}") from None
