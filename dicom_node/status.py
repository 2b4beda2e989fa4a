"""``ldh status``: per study, what was received, what waits, what was analysed, exported, skipped or failed."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from dicom_node.db import Database

COLUMNS = ("study", "instances", "series", "waiting", "skipped", "queued", "analysed", "exported", "failed")


def study_status(db: Database) -> dict:
    studies: dict[str, dict] = defaultdict(lambda: {c: 0 for c in COLUMNS[1:]} | {"notes": []})
    for r in db.query("SELECT study_uid, count(*) n, count(DISTINCT series_uid) s,"
                      " count(DISTINCT CASE WHEN assembled = 0 THEN series_uid END) w"
                      " FROM instances GROUP BY study_uid"):
        st = studies[r["study_uid"]]
        st.update(instances=r["n"], series=r["s"], waiting=r["w"])
    for r in db.query("SELECT study_uid, series_uid, reason FROM series WHERE state = 'skipped'"):
        st = studies[r["study_uid"]]
        st["skipped"] += 1
        st["notes"].append(f"series {r['series_uid']} not analysed: {r['reason']}")
    for r in db.query("SELECT study_uid, series_uid, out_dir FROM jobs WHERE state = 'done'"):
        reason = _not_analysable(r["out_dir"])
        if reason:
            studies[r["study_uid"]]["notes"].append(f"series {r['series_uid']} not analysable: {reason}")
    for r in db.query("SELECT study_uid, state, count(*) n, group_concat(error, ' | ') e FROM jobs"
                      " GROUP BY study_uid, state"):
        st = studies[r["study_uid"]]
        if r["state"] in ("queued", "running"):
            st["queued"] += r["n"]
        elif r["state"] == "done":
            st["analysed"] += r["n"]
        else:
            st["failed"] += r["n"]
            st["notes"].append(f"analysis failed: {r['e']}")
    for r in db.query("SELECT study_uid, state, count(*) n, group_concat(DISTINCT error) e FROM outbox"
                      " GROUP BY study_uid, state"):
        st = studies[r["study_uid"]]
        if r["state"] == "sent":
            st["exported"] += r["n"]
        elif r["state"] == "dead":
            st["failed"] += r["n"]
            st["notes"].append(f"export dead-lettered: {r['e']}")
        else:
            st["notes"].append(f"{r['n']} export(s) pending")
    unparsed = []
    for r in db.query("SELECT door, source, study_uid, count(*) n, group_concat(DISTINCT error) e FROM receive_dead"
                      " GROUP BY door, CASE WHEN study_uid = '' THEN source ELSE study_uid END"):
        if not r["study_uid"]:
            unparsed.append(f"{r['door']}: notification dead-lettered: {r['e']}")
            continue
        st = studies[r["study_uid"]]
        st["failed"] += r["n"]
        st["notes"].append(f"{r['n']} instance(s) not received from {r['door']}, dead-lettered: {r['e']}")
    destinations = [dict(r) for r in db.query("SELECT name, state, message, updated FROM destinations")]
    return {"studies": [{"study": k, **v} for k, v in sorted(studies.items())], "destinations": destinations,
            "receive_dead": unparsed}


def _not_analysable(out_dir: str | None) -> str | None:
    """The reason the analysis gave in its findings.json for declining a series (the worker's file contract)."""
    try:
        return json.loads((Path(out_dir) / "findings.json").read_text()).get("not_analysable") if out_dir else None
    except (OSError, ValueError):
        return None


def format_status(status: dict) -> str:
    rows = [COLUMNS] + [tuple(str(s[c]) for c in COLUMNS) for s in status["studies"]]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
    for s in status["studies"]:
        lines += [f"  {s['study']}: {note}" for note in s["notes"]]
    for d in status["destinations"]:
        lines.append(f"destination {d['name']}: {d['state']}" + (f" ({d['message']})" if d["message"] else ""))
    lines += status.get("receive_dead", [])
    if not status["studies"]:
        lines.append("(nothing received yet)")
    return "\n".join(lines)


def load(data_dir: Path) -> dict:
    from dicom_node.node import db_path

    path = db_path(data_dir)
    if not path.exists():
        return {"studies": [], "destinations": [], "receive_dead": []}
    return study_status(Database(path))
