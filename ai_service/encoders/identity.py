"""Who made an emitted object: device identity, IHE AIR Contributing Equipment, series numbering.

The device UID is derived from (manufacturer, model, serial number), so one installation always names itself
with the same UID in the SEG's and SR's Contributing Equipment and in the SR's device observer context.
"""

from __future__ import annotations

import copy
import datetime

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import generate_uid

from ai_service.config import Settings
from ai_service.encoders import codes
from ai_service.findings import ModelVersions

MODEL_NAME = "LDH Assist"
ALGORITHM_NAME = "LDH Assist lumbar disc herniation detector"
SEG_ALGORITHM_NAME = "LDH Assist disc segmentation"

SEG_SERIES_DESCRIPTION = "LDH Assist discs (AI)"
SR_SERIES_DESCRIPTION = "LDH Assist report (AI)"
REVIEWED_SR_SERIES_DESCRIPTION = "LDH Assist report (reviewed)"
PREVIEW_SERIES_DESCRIPTION = "LDH Assist preview (AI, not for diagnosis)"

# Series numbers of what we emit (high, so they sort after the acquired series in a viewer).
SEG_SERIES_NUMBER = 9901
SR_SERIES_NUMBER = 9902
PREVIEW_SERIES_NUMBER = 9903
REVIEWED_SR_SERIES_NUMBER = 9904

# Patient and study attributes copied verbatim from the source (Patient, Clinical Trial Subject, General
# Study, Patient Study modules), overriding whatever a constructor derived from them.
PATIENT_STUDY_KEYWORDS: tuple[str, ...] = (
    "SpecificCharacterSet",
    "PatientName", "PatientID", "IssuerOfPatientID", "IssuerOfPatientIDQualifiersSequence",
    "PatientBirthDate", "PatientBirthTime", "PatientSex", "OtherPatientIDsSequence",
    "PatientIdentityRemoved", "DeidentificationMethod", "DeidentificationMethodCodeSequence",
    "PatientSpeciesDescription", "PatientSpeciesCodeSequence", "PatientBreedDescription",
    "PatientBreedCodeSequence", "BreedRegistrationSequence", "ResponsiblePerson", "ResponsibleOrganization",
    "StudyInstanceUID", "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber",
    "IssuerOfAccessionNumberSequence", "StudyDescription",
    "PatientAge", "PatientSize", "PatientWeight",
    "ClinicalTrialSponsorName", "ClinicalTrialProtocolID", "ClinicalTrialProtocolName", "ClinicalTrialSiteID",
    "ClinicalTrialSiteName", "ClinicalTrialSubjectID", "ClinicalTrialSubjectReadingID",
    "ClinicalTrialTimePointID",
)


def device_uid(settings: Settings) -> str:
    """Stable UID of this installation of the algorithm (same inputs -> same UID)."""
    return generate_uid(entropy_srcs=[settings.manufacturer, MODEL_NAME, settings.device_serial_number])


def software_versions(models: ModelVersions | str) -> str:
    return models.label if isinstance(models, ModelVersions) else str(models)


def contributing_equipment_item(settings: Settings, versions: str) -> Dataset:
    """One Contributing Equipment Sequence item with the IHE AIR "Processing Algorithm" purpose."""
    item = Dataset()
    item.Manufacturer = settings.manufacturer
    if settings.institution_name:
        item.InstitutionName = settings.institution_name
    item.ManufacturerModelName = MODEL_NAME
    item.DeviceSerialNumber = settings.device_serial_number
    item.SoftwareVersions = versions
    item.DeviceUID = device_uid(settings)
    purpose = Dataset()
    purpose.CodeValue = codes.PROCESSING_ALGORITHM.value
    purpose.CodingSchemeDesignator = codes.PROCESSING_ALGORITHM.scheme_designator
    purpose.CodeMeaning = codes.PROCESSING_ALGORITHM.meaning
    item.PurposeOfReferenceCodeSequence = DicomSequence([purpose])
    item.ContributionDateTime = datetime.datetime.now().astimezone().strftime("%Y%m%d%H%M%S.%f%z")
    item.ContributionDescription = "AI analysis of lumbar spine MR: disc segmentation and herniation detection"
    return item


def stamp_identity(ds: Dataset, settings: Settings, versions: str, description: str) -> None:
    """General Equipment, series description, Contributing Equipment and coding schemes of an emitted object."""
    ds.Manufacturer = settings.manufacturer
    ds.ManufacturerModelName = MODEL_NAME
    ds.DeviceSerialNumber = settings.device_serial_number
    ds.SoftwareVersions = versions
    if settings.institution_name:
        ds.InstitutionName = settings.institution_name
    ds.SeriesDescription = description
    existing = list(ds.get("ContributingEquipmentSequence", []))
    ds.ContributingEquipmentSequence = DicomSequence([*existing, contributing_equipment_item(settings, versions)])
    schemes = [i for i in ds.get("CodingSchemeIdentificationSequence", [])]
    known = {i.CodingSchemeDesignator for i in schemes}
    schemes += [i for i in codes.coding_scheme_identification() if i.CodingSchemeDesignator not in known]
    ds.CodingSchemeIdentificationSequence = DicomSequence(schemes)


def copy_patient_study(ds: Dataset, source: Dataset) -> None:
    """Copy patient/study attributes from the source exactly (values and presence)."""
    for keyword in PATIENT_STUDY_KEYWORDS:
        if keyword in source:
            ds[keyword] = copy.deepcopy(source[keyword])
