"""Every coded concept the encoders write, in one place.

Standard codes come from SNOMED CT (``SCT``), DICOM (``DCM``) and UCUM; each carries the DICOM context group
it is taken from where there is one. Concepts that have no standard code live in the private coding scheme
:data:`PRIVATE_SCHEME` (``99LDH``), which every emitted object declares in its Coding Scheme Identification
Sequence (see :func:`coding_scheme_identification`).
"""

from __future__ import annotations

from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from ai_service.labels import LEVELS

# --- private coding scheme ---------------------------------------------------------------------------------
PRIVATE_SCHEME = "99LDH"
PRIVATE_SCHEME_NAME = "LDH Assist private codes"
PRIVATE_SCHEME_ORGANIZATION = "LDH Assist open-source project"

#: Concept name of the qualitative evaluation "is this disc herniated?" (value: :data:`PRESENT` / :data:`ABSENT`).
HERNIATION = Code("LDH001", PRIVATE_SCHEME, "Lumbar disc herniation")
#: Concept name of the NUM holding the model's P(herniation) in [0, 1] (unit :data:`UNIT_PROBABILITY`).
HERNIATION_PROBABILITY = Code("LDH002", PRIVATE_SCHEME, "Probability of lumbar disc herniation")
#: Finding of the single measurement group written when no reportable disc was found.
REPORTABLE_DISC = Code("LDH003", PRIVATE_SCHEME, "Lumbar intervertebral disc L1-L2 to L5-S1")
#: Concept name of the qualitative evaluation in that group (value :data:`ABSENT`).
DISC_DETECTION = Code("LDH004", PRIVATE_SCHEME, "Intervertebral disc detected")
#: Concept name of the qualitative evaluation written instead when the models declined the series (value
#: :data:`NO`); the tracking identifier of that group says why ("Not analysable: <reason>").
ANALYSABLE = Code("LDH005", PRIVATE_SCHEME, "Series analysable by the AI")

# --- IHE AI Results (AIR) ----------------------------------------------------------------------------------
IHE_SCHEME = "99IHE"
#: Purpose of Reference of our Contributing Equipment item, as the IHE AIR supplement (Rev 1.1, trial
#: implementation) specifies it: (Newcode1, 99IHE, "Processing Algorithm").
PROCESSING_ALGORITHM = Code("Newcode1", IHE_SCHEME, "Processing Algorithm")

# --- SNOMED CT / DCM / UCUM ---------------------------------------------------------------------------------
PRESENT = Code("52101004", "SCT", "Present")  # CID 240/241
ABSENT = Code("272519000", "SCT", "Absent")  # CID 240/241
NO = Code("373067005", "SCT", "No")  # CID 230 (Yes-No)
ANATOMICAL_STRUCTURE = Code("91723000", "SCT", "Anatomical Structure")  # CID 7150 (segmented property category)
LUMBAR_SPINE = Code("122496007", "SCT", "Lumbar spine")  # CID 4031 (anatomic region)
#: Procedure reported (TID 1500 row 4, DCID 100). CID 100 has no lumbar-spine MR code, and a code from outside
#: it is an error for the pixelmed validator, so the report names the modality here and the lumbar spine in
#: every finding site (CID 1003 disc levels) and in the SEG's anatomic region.
PROCEDURE_REPORTED = Code("25056-3", "LN", "MRI unspecified body region")
ALGORITHM_FAMILY = codes.DCM.ArtificialIntelligence  # (123110, DCM) CID 7162
UNIT_PROBABILITY = Code("1", "UCUM", "no units")  # CID 7181
REPORT_TITLE = codes.DCM.ImagingMeasurementReport  # (126000, DCM) CID 7021

#: The disc itself, per level (CID 7604 "Intervertebral Disc"): segmented property type and SR finding.
DISC: dict[str, Code] = {
    "L1-L2": Code("80064006", "SCT", "L1/L2 disc"),
    "L2-L3": Code("67459009", "SCT", "L2/L3 disc"),
    "L3-L4": Code("62551000", "SCT", "L3/L4 disc"),
    "L4-L5": Code("84020006", "SCT", "L4/L5 disc"),
    "L5-S1": Code("715056000", "SCT", "L5/S1 disc"),
}
#: The disc level (CID 1003 "Anatomical Reference Basis - Spine"): SR finding site.
DISC_LEVEL: dict[str, Code] = {
    "L1-L2": Code("243920003", "SCT", "Level of L1/L2 intervertebral disc"),
    "L2-L3": Code("243921004", "SCT", "Level of L2/L3 intervertebral disc"),
    "L3-L4": Code("243922006", "SCT", "Level of L3/L4 intervertebral disc"),
    "L4-L5": Code("243923001", "SCT", "Level of L4/L5 intervertebral disc"),
    "L5-S1": Code("243927000", "SCT", "Level of L5/S1 intervertebral disc"),
}
assert set(DISC) == set(DISC_LEVEL) == set(LEVELS)


def level_of_code(value: str, scheme: str) -> str | None:
    """Disc level named by a DISC or DISC_LEVEL code (None if neither)."""
    for table in (DISC_LEVEL, DISC):
        for level, code in table.items():
            if code.value == value and code.scheme_designator == scheme:
                return level
    return None


def coding_scheme_identification() -> list[Dataset]:
    """Items of the Coding Scheme Identification Sequence (0008,0110) for the non-standard schemes we use."""
    private = Dataset()
    private.CodingSchemeDesignator = PRIVATE_SCHEME
    private.CodingSchemeName = PRIVATE_SCHEME_NAME
    private.CodingSchemeResponsibleOrganization = PRIVATE_SCHEME_ORGANIZATION
    ihe = Dataset()
    ihe.CodingSchemeDesignator = IHE_SCHEME
    ihe.CodingSchemeName = "IHE defined codes"
    ihe.CodingSchemeResponsibleOrganization = "IHE International"
    return [private, ihe]


#: Code meanings as the DICOM templates spell them, where a library writes a different capitalisation.
TEMPLATE_CODE_MEANINGS: dict[tuple[str, str], str] = {
    ("121232", "DCM"): "Source series for segmentation",
}
