"""Synthetic sagittal T2 lumbar spine MRI phantoms with disc labels and herniation truth.

No herniation-labelled lumbar MRI is available, so every model is trained and tested on this generator; it
varies anatomy, pathology, scanner geometry and contrast (see ``PhantomProfile``).
"""

from .case import PhantomCase, generate_case
from .profile import PROFILES, PhantomProfile, resolve_profile
from .writer import generate_dataset, write_case

__all__ = ["PROFILES", "PhantomCase", "PhantomProfile", "generate_case", "generate_dataset", "resolve_profile",
           "write_case"]
