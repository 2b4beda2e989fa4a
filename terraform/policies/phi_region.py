"""CKV_LDH_3: the PHI stores (Healthcare dataset, every bucket: data with the feedback records, models, pipeline
root, access logs; the Filestore share of the node's inbox) stay in an approved region (a zonal share's zone
counts as its region). ALLOWED is the default of variable phi_regions (a test keeps the
two equal); var.region's validation enforces the same list on whatever region a deployment passes."""

import re

from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.common.util.data_structures_utils import find_in_dict
from checkov.terraform.checks.resource.base_resource_check import BaseResourceCheck

ALLOWED = ("europe-west1", "europe-west3", "europe-west4")


class PhiRegion(BaseResourceCheck):
    def __init__(self) -> None:
        super().__init__(
            name="LDH: PHI stores (Healthcare dataset, buckets, Filestore) are in an approved region",
            id="CKV_LDH_3", categories=[CheckCategories.GENERAL_SECURITY],
            supported_resources=["google_healthcare_dataset", "google_storage_bucket", "google_filestore_instance"])

    def scan_resource_conf(self, conf) -> CheckResult:
        location = find_in_dict(conf, "location/[0]")
        if not isinstance(location, str):
            return CheckResult.FAILED
        # bucket locations are case-insensitive ("EU", "europe-west4"); multi-regions are never approved
        location = location.lower()
        if self.entity_type == "google_filestore_instance" and re.fullmatch(r"[a-z]+-[a-z]+[0-9]+-[a-z]", location):
            location = location[:-2]  # a zonal share: europe-west4-a is in europe-west4
        return CheckResult.PASSED if location in ALLOWED else CheckResult.FAILED


check = PhiRegion()
