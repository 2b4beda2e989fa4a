"""CKV_LDH_5: a Pub/Sub subscription moves what it cannot deliver to a dead-letter topic, so a notification that
keeps failing neither blocks the rest nor is dropped when its retention ends."""

from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.common.util.data_structures_utils import find_in_dict
from checkov.terraform.checks.resource.base_resource_check import BaseResourceCheck


class DeadLetter(BaseResourceCheck):
    def __init__(self) -> None:
        super().__init__(
            name="LDH: Pub/Sub subscriptions have a dead-letter policy",
            id="CKV_LDH_5", categories=[CheckCategories.BACKUP_AND_RECOVERY],
            supported_resources=["google_pubsub_subscription"])

    def scan_resource_conf(self, conf) -> CheckResult:
        topic = find_in_dict(conf, "dead_letter_policy/[0]/dead_letter_topic/[0]")
        return CheckResult.PASSED if isinstance(topic, str) and topic.strip() else CheckResult.FAILED


check = DeadLetter()
