"""Per-study debouncing of instance notifications: a study is fetched once its notifications have been quiet for
the node's quiet period, as one batch (one pseudo-association), so its series reach the assembler whole.

Every Pub/Sub message stays held (its lease extended by the subscriber) until its instance is durable in the inbox
or dead-lettered; a redelivered message joins the entry of its instance and is acked with it. Instances whose
retrieval failed come back after their backoff, without holding up the rest of the study or other studies.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field

from dicom_node.healthcare_notice import Notice


@dataclass
class Item:
    """One instance and every message that announced it."""

    notice: Notice
    messages: list = field(default_factory=list)
    attempts: int = 0
    error: str = ""


@dataclass
class Batch:
    store: str
    study: str
    items: list[Item]


@dataclass
class _Study:
    items: dict[tuple[str, str, str], Item] = field(default_factory=dict)
    last: float = 0.0  # last new notification
    not_before: float = 0.0  # retry backoff


class Debouncer:
    def __init__(self, quiet_s: float, clock=time.monotonic):
        self.quiet_s = quiet_s
        self.clock = clock
        self._studies: dict[tuple[str, str], _Study] = defaultdict(_Study)
        self._lock = threading.Lock()

    def add(self, notice: Notice, message) -> None:
        with self._lock:
            study = self._studies[(notice.store, notice.study)]
            item = study.items.get(notice.key)
            if item is None:
                item = study.items[notice.key] = Item(notice)
                study.last = self.clock()
            item.messages.append(message)

    def due(self) -> list[Batch]:
        """Studies quiet for the quiet period (and past any backoff), removed from the pending set."""
        now = self.clock()
        out = []
        with self._lock:
            for key, study in list(self._studies.items()):
                if now - study.last >= self.quiet_s and now >= study.not_before:
                    del self._studies[key]
                    out.append(Batch(key[0], key[1], list(study.items.values())))
        return out

    def retry(self, store: str, study_uid: str, items: list[Item], delay_s: float) -> None:
        """Put failed items back, due in ``delay_s`` (messages that arrived meanwhile are kept)."""
        with self._lock:
            study = self._studies[(store, study_uid)]
            study.not_before = max(study.not_before, self.clock() + delay_s)
            for item in items:
                held = study.items.get(item.notice.key)
                if held is not None:
                    item.messages.extend(held.messages)
                study.items[item.notice.key] = item

    def pending(self) -> int:
        with self._lock:
            return sum(len(s.items) for s in self._studies.values())

    def drain(self) -> list:
        """Every held message (at shutdown, to be nacked for prompt redelivery)."""
        with self._lock:
            messages = [m for s in self._studies.values() for i in s.items.values() for m in i.messages]
            self._studies.clear()
        return messages
