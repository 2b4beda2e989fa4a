"""CKV_LDH_3: the PHI stores (Healthcare dataset, every bucket: data with the feedback records, models, pipeline
root, access logs) stay in an approved region. ALLOWED is the default of variable phi_regions (a test keeps the
two equal); var.region's validation enforces the same list on whatever region a deployment passes."""

from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.common.util.data_structures_utils import find_in_dict
from checkov.terraform.checks.resource.base_resource_check import BaseResourceCheck

ALLOWED = ("europe-west1", "europe-west3", "europe-west4")


class PhiRegion(BaseResourceCheck):
    def __init__(self) -> None:
        super().__init__(
            name="LDH: PHI stores (Healthcare dataset, buckets) are in an approved region",
            id="CKV_LDH_3", categories=[CheckCategories.GENERAL_SECURITY],
            supported_resources=["google_healthcare_dataset", "google_storage_bucket"])

    def scan_resource_conf(self, conf) -> CheckResult:
        location = find_in_dict(conf, "location/[0]")
        # bucket locations are case-insensitive ("EU", "europe-west4"); multi-regions are never approved
        return CheckResult.PASSED if isinstance(location, str) and location.lower() in ALLOWED else CheckResult.FAILED


check = PhiRegion()
