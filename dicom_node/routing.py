"""Routing: which complete series are analysed. Rules come from a JSON file (``LDH_NODE_ROUTING_FILE``).

A rule matches when every condition it names holds; the first matching rule with ``"analyse": true`` routes the
series to analysis. A series no rule accepts is kept in the inbox and recorded as skipped, with the reasons the
closest rule gave (visible in the log and ``ldh status``). File format::

    {"rules": [{"name": "lumbar-sagittal-mr", "analyse": true,
                "modality": ["MR"],
                "sop_classes": ["1.2.840.10008.5.1.4.1.1.4", ...],   # optional
                "anatomy_pattern": "LSPINE|LUMBAR|L-SPINE|L SPINE|LWS",  # regex over body part / descriptions
                "orientation": "sagittal",                            # sagittal | axial | coronal | any
                "min_slices": 8}]}
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom

DEFAULT_RULES = {
    "rules": [
        {
            "name": "lumbar-sagittal-mr",
            "analyse": True,
            "modality": ["MR"],
            "anatomy_pattern": r"LSPINE|L-?SPINE|LUMBAR|LWS|LENDEN|\bL[1-5]\b",
            "orientation": "sagittal",
            "min_slices": 8,
        }
    ]
}
ANATOMY_FIELDS = ("BodyPartExamined", "StudyDescription", "SeriesDescription", "ProtocolName")
# SNOMED CT codes for lumbar spine / lumbar region in AnatomicRegionSequence
LUMBAR_CODES = {"122496007", "M-14640", "T-11503", "71854001"}


@dataclass
class SeriesFacts:
    modality: str
    sop_class: str
    anatomy_text: str
    anatomy_codes: set[str]
    orientation: str
    slices: int


@dataclass
class Decision:
    analyse: bool
    rule: str | None
    reasons: list[str] = field(default_factory=list)

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons) if self.reasons else "matched"


def _orientation_of(iop) -> str:
    if iop is None or len(iop) != 6:
        return "unknown"
    normal = np.cross(np.asarray(iop[:3], float), np.asarray(iop[3:], float))
    axis = int(np.argmax(np.abs(normal)))
    if abs(normal[axis]) < 0.8:  # more than ~37 degrees oblique
        return "oblique"
    return ("sagittal", "coronal", "axial")[axis]


def series_facts(files: list[Path]) -> SeriesFacts:
    """Read the routing attributes of one series (headers only, first instance) and count its slices."""
    ds = pydicom.dcmread(files[0], stop_before_pixels=True)
    iop = ds.get("ImageOrientationPatient")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if iop is None:
        for seq_name in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
            groups = ds.get(seq_name)
            if groups and "PlaneOrientationSequence" in groups[0]:
                iop = groups[0].PlaneOrientationSequence[0].ImageOrientationPatient
                break
    codes = {str(item.get("CodeValue", "")) for item in ds.get("AnatomicRegionSequence", [])}
    text = " ".join(str(ds.get(name, "")) for name in ANATOMY_FIELDS).upper()
    return SeriesFacts(
        modality=str(ds.get("Modality", "")),
        sop_class=str(ds.get("SOPClassUID", "")),
        anatomy_text=text,
        anatomy_codes=codes,
        orientation=_orientation_of([float(v) for v in iop] if iop is not None else None),
        slices=max(frames, len(files)) if frames > 1 else len(files),
    )


class Router:
    def __init__(self, rules: dict | None = None):
        self.rules = (rules or DEFAULT_RULES)["rules"]
        for rule in self.rules:
            if "name" not in rule:
                raise ValueError("every routing rule needs a name")
            if "anatomy_pattern" in rule:
                rule["_pattern"] = re.compile(rule["anatomy_pattern"], re.IGNORECASE)

    @classmethod
    def from_file(cls, path: Path | None) -> "Router":
        if path is None:
            return cls()
        return cls(json.loads(Path(path).read_text()))

    def _check(self, rule: dict, facts: SeriesFacts) -> list[str]:
        reasons = []
        if "modality" in rule and facts.modality not in rule["modality"]:
            reasons.append(f"modality {facts.modality or '?'} not in {rule['modality']}")
        if "sop_classes" in rule and facts.sop_class not in rule["sop_classes"]:
            reasons.append(f"SOP class {facts.sop_class} not routed")
        if "_pattern" in rule and not (rule["_pattern"].search(facts.anatomy_text)
                                       or facts.anatomy_codes & LUMBAR_CODES):
            reasons.append("not lumbar spine by body part / description / anatomy")
        want = rule.get("orientation", "any")
        if want != "any" and facts.orientation != want:
            reasons.append(f"{facts.orientation} orientation, not {want}")
        if facts.slices < int(rule.get("min_slices", 1)):
            reasons.append(f"{facts.slices} slices < {rule['min_slices']}")
        return reasons

    def decide(self, files: list[Path]) -> Decision:
        try:
            facts = series_facts(files)
        except Exception as exc:  # an unreadable header is a routing outcome, not a crash
            return Decision(False, None, [f"header unreadable: {exc}"])
        best: Decision | None = None
        for rule in self.rules:
            reasons = self._check(rule, facts)
            if not reasons:
                return Decision(bool(rule.get("analyse", True)), rule["name"],
                                [] if rule.get("analyse", True) else [f"rule {rule['name']} says do not analyse"])
            if best is None or len(reasons) < len(best.reasons):
                best = Decision(False, rule["name"], reasons)
        return best or Decision(False, None, ["no routing rules"])
