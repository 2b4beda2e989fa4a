"""Step 5 and the registry's alias history: the gate, ``promote`` and ``rollback``.

Model versions are immutable (:mod:`ai_service.registry`); what changes is the ``production`` alias. Every change is
appended to ``<store>/<name>/alias-history.jsonl`` (who/what moved it, from which version, why), so a rollback
knows the version before and the lineage of every production period stays readable. Both objects change by
read-modify-write through the storage (local or gs://), so concurrent promotions lose no history line and cannot
both replace the same production version.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import asdict, dataclass

from ai_service.errors import ModelError
from ai_service.registry import ModelRegistry
from ai_service.storage import NotFound

HISTORY = "alias-history.jsonl"


@dataclass(frozen=True)
class GateSettings:
    min_auc_gain: float
    max_sens_loss: float
    max_frozen_auc_loss: float
    min_gain_lower_bound: float
    min_holdout_auc: float


@dataclass(frozen=True)
class Decision:
    promote: bool
    reasons: list[str]  # every check, passed or failed, in words

    def as_dict(self) -> dict:
        return asdict(self)


def gate(candidate: dict, production: dict, settings: GateSettings) -> Decision:
    """Promote only when every check passes.

    ``candidate`` / ``production``: :func:`pipelines.retrain.evaluate.compare` metrics per set (``holdout``,
    ``frozen``, ``pooled``); the hold-out is scored against the reviewers' own labels. On the new hold-out (where
    the model is used) the AUC must gain ``min_auc_gain`` and the gain must be more than noise: its paired
    bootstrap lower bound over patients must exceed ``min_gain_lower_bound``. The candidate must also reach
    ``min_holdout_auc`` there: it learned from the train patients' reviews and is scored on other patients'
    reviews, so inconsistent labels (a careless reviewer) cap what any model can reach, whatever the gain. Old
    skills: the frozen phantom set's AUC may drop at most ``max_frozen_auc_loss``, and sensitivity at the
    operating specificity on everything pooled at most ``max_sens_loss``.
    """
    checks = []
    c_auc, p_auc = candidate["holdout"]["auc"], production["holdout"]["auc"]
    bound = candidate["holdout"]["vs_production"]
    checks.append((c_auc - p_auc >= settings.min_auc_gain,
                   f"hold-out AUC {c_auc:.4f} vs production {p_auc:.4f} "
                   f"(gain {c_auc - p_auc:+.4f}, needed >= {settings.min_auc_gain:+.4f})"))
    checks.append((bound["lower_bound"] > settings.min_gain_lower_bound,
                   f"hold-out AUC gain lower bound {bound['lower_bound']:+.4f} ({bound['confidence']:.0%} one-sided, "
                   f"paired bootstrap over {bound['patients']} patients; "
                   f"needed > {settings.min_gain_lower_bound:+.4f})"))
    checks.append((c_auc >= settings.min_holdout_auc,
                   f"hold-out AUC {c_auc:.4f} against the reviewers' labels (needed >= {settings.min_holdout_auc:.4f}; "
                   "lower means the model or the reviews are not consistent)"))
    loss = production["frozen"]["auc"] - candidate["frozen"]["auc"]
    checks.append((loss <= settings.max_frozen_auc_loss,
                   f"frozen-set AUC {candidate['frozen']['auc']:.4f} vs production {production['frozen']['auc']:.4f} "
                   f"(loss {loss:+.4f}, allowed <= {settings.max_frozen_auc_loss:.4f})"))
    sens_loss = production["pooled"]["sensitivity"] - candidate["pooled"]["sensitivity"]
    checks.append((sens_loss <= settings.max_sens_loss + 1e-9,
                   f"sensitivity at the operating specificity {candidate['pooled']['sensitivity']:.4f} vs production "
                   f"{production['pooled']['sensitivity']:.4f} (loss {sens_loss:+.4f}, allowed <= "
                   f"{settings.max_sens_loss:.4f})"))
    for name, m in (("candidate", candidate), ("production", production)):
        if any(v != v for v in (m["holdout"]["auc"], m["frozen"]["auc"])):  # NaN: a set without both classes
            checks.append((False, f"{name} AUC undefined (a set lacks herniated or healthy discs)"))
    return Decision(all(ok for ok, _ in checks), [("passed: " if ok else "FAILED: ") + text for ok, text in checks])


def history(registry: ModelRegistry, name: str) -> list[dict]:
    try:
        text = registry.storage.read_bytes(f"{name}/{HISTORY}").decode()
    except NotFound:
        return []
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def set_production(registry: ModelRegistry, name: str, version: str, *, action: str, reason: str,
                   run_id: str | None = None) -> dict:
    """Point ``production`` at ``version`` (checked first) and append the change to the history.

    The move happens only if production is still what the history entry says it came from
    (:class:`ai_service.registry.AliasMoved` otherwise; the entry then records an attempt that changed nothing).
    """
    version = registry.check(name, version)
    before = registry.aliases(name).get("production")
    entry = {"time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
             "action": action, "alias": "production", "from": before, "to": version, "reason": reason,
             "run_id": run_id}
    line = (json.dumps(entry) + "\n").encode()
    registry.storage.update(f"{name}/{HISTORY}", lambda old: (old or b"") + line)  # first: no move goes unrecorded
    registry.set_alias(name, "production", version, expected=before)
    return entry


def rollback(registry: ModelRegistry, name: str, reason: str = "manual rollback") -> dict:
    """Point ``production`` back at the version it had before its current one."""
    current = registry.aliases(name).get("production")
    for entry in reversed(history(registry, name)):
        if entry["to"] == current and entry["from"] and entry["from"] != current:
            return set_production(registry, name, entry["from"], action="rollback", reason=reason)
    raise ModelError(f"{name}: no earlier production version recorded in {HISTORY} to roll back to "
                     f"(production is {current}); use `ldh models promote {name} VERSION`")
