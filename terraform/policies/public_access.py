"""CKV_LDH_1: nothing in the deployment is public. No IAM grant or storage ACL names allUsers or
allAuthenticatedUsers, and every bucket enforces public access prevention (so a later ACL cannot open it)."""

from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.common.util.data_structures_utils import find_in_dict
from checkov.terraform.checks.resource.base_resource_check import BaseResourceCheck

PUBLIC = ("allUsers", "allAuthenticatedUsers")
STORAGE_ACLS = ("google_storage_bucket_acl", "google_storage_default_object_acl", "google_storage_object_acl")
STORAGE_ACCESS_CONTROLS = ("google_storage_bucket_access_control", "google_storage_default_object_access_control",
                           "google_storage_object_access_control")


class NoPublicAccess(BaseResourceCheck):
    def __init__(self) -> None:
        super().__init__(
            name="LDH: no public members (allUsers/allAuthenticatedUsers) and buckets enforce public access prevention",
            id="CKV_LDH_1", categories=[CheckCategories.GENERAL_SECURITY],
            supported_resources=["google_*_iam_member", "google_*_iam_binding", "google_storage_bucket",
                                 *STORAGE_ACLS, *STORAGE_ACCESS_CONTROLS])

    def scan_resource_conf(self, conf) -> CheckResult:
        if self.entity_type == "google_storage_bucket":
            enforced = find_in_dict(conf, "public_access_prevention/[0]") == "enforced"
            return CheckResult.PASSED if enforced else CheckResult.FAILED
        if self.entity_type in STORAGE_ACLS:  # "READER:allUsers"
            grantees = [entry.rsplit(":", 1)[-1] for entry in find_in_dict(conf, "role_entity/[0]") or []]
        elif self.entity_type in STORAGE_ACCESS_CONTROLS:
            grantees = [find_in_dict(conf, "entity/[0]")]
        else:
            grantees = [find_in_dict(conf, "member/[0]"), *(find_in_dict(conf, "members/[0]") or [])]
        return CheckResult.FAILED if any(g in PUBLIC for g in grantees) else CheckResult.PASSED


check = NoPublicAccess()
