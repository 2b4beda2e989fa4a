"""CKV_LDH_2: no IAM grant uses a primitive role. Owner/editor/viewer span every service in the project (viewer
reads every bucket and the DICOM store), so each account gets predefined roles on the resources it uses."""

from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.common.util.data_structures_utils import find_in_dict
from checkov.terraform.checks.resource.base_resource_check import BaseResourceCheck

PRIMITIVE = ("roles/owner", "roles/editor", "roles/viewer")


class NoPrimitiveRoles(BaseResourceCheck):
    def __init__(self) -> None:
        super().__init__(
            name="LDH: no primitive role (roles/owner, roles/editor, roles/viewer) in any IAM member or binding",
            id="CKV_LDH_2", categories=[CheckCategories.IAM],
            supported_resources=["google_*_iam_member", "google_*_iam_binding"])

    def scan_resource_conf(self, conf) -> CheckResult:
        role = find_in_dict(conf, "role/[0]")
        return CheckResult.FAILED if role in PRIMITIVE else CheckResult.PASSED


check = NoPrimitiveRoles()
