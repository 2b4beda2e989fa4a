"""CKV_LDH_4: the PHI stores (Healthcare dataset, buckets, the Filestore share of the node's inbox) are encrypted with the hospital's own key (CMEK), so revoking the key makes the data
unreadable to everyone, Google included."""

from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.common.util.data_structures_utils import find_in_dict
from checkov.terraform.checks.resource.base_resource_check import BaseResourceCheck

KEY_PATH = {
    "google_healthcare_dataset": "encryption_spec/[0]/kms_key_name/[0]",
    "google_storage_bucket": "encryption/[0]/default_kms_key_name/[0]",
    "google_filestore_instance": "kms_key_name/[0]",
}


class PhiCmek(BaseResourceCheck):
    def __init__(self) -> None:
        super().__init__(
            name="LDH: PHI stores (Healthcare dataset, buckets, Filestore) set a Cloud KMS key (CMEK)",
            id="CKV_LDH_4", categories=[CheckCategories.ENCRYPTION], supported_resources=list(KEY_PATH))

    def scan_resource_conf(self, conf) -> CheckResult:
        key = find_in_dict(conf, KEY_PATH[self.entity_type])
        return CheckResult.PASSED if isinstance(key, str) and key.strip() else CheckResult.FAILED


check = PhiCmek()
