"""Step 1: the feedback records in force, and how many of them the last dataset version has not seen.

Supersession (a later correction supersedes everything earlier of its study, a correction supersedes an accept)
is :class:`ai_service.feedback.FeedbackStore`'s; here we only compare with the last dataset's manifest, which
lists the record ids it was built from. A record that supersedes one already used counts as new.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from ai_service.feedback import FeedbackStore
from ai_service.storage import Storage

DATASETS = "datasets"


@dataclass
class Collection:
    records: list[dict]  # every record in force (a dataset is a full snapshot, not a delta)
    new_ids: list[str]  # those the last dataset version did not contain
    previous_version: str | None
    min_new: int
    enough: bool = field(init=False)

    def __post_init__(self) -> None:
        self.enough = len(self.new_ids) >= self.min_new

    @property
    def message(self) -> str:
        since = f"since dataset {self.previous_version}" if self.previous_version else "(no dataset yet)"
        if not self.enough:
            return (f"not enough new feedback: {len(self.new_ids)} new record(s) {since}, "
                    f"{self.min_new} needed (LDH_PIPELINE_MIN_NEW_RECORDS)")
        return f"{len(self.new_ids)} new record(s) {since}, {len(self.records)} in force"


def dataset_versions(storage: Storage) -> list[str]:
    """Complete dataset versions (their manifest, written last, exists), oldest first (names sort by time)."""
    return sorted({k.split("/")[1] for k in storage.list(DATASETS) if k.endswith("/manifest.json")
                   and k.count("/") == 2})


def read_manifest(storage: Storage, version: str) -> dict:
    return json.loads(storage.read_bytes(f"{DATASETS}/{version}/manifest.json"))


def collect(storage: Storage, min_new: int) -> Collection:
    records = sorted(FeedbackStore(storage).current_records(), key=lambda r: r["record_id"])
    versions = dataset_versions(storage)
    previous = versions[-1] if versions else None
    seen = set(read_manifest(storage, previous)["record_ids"]) if previous else set()
    return Collection(records, [r["record_id"] for r in records if r["record_id"] not in seen], previous, min_new)
