"""Fuzzing at every door of a real ``ldh serve`` (loopback only), with hypothesis as the engine.

Doors: ``dimse`` (mutated C-STORE data sets seeded from pydicom's real MR files, and PDU-level attacks),
``upload`` (hostile files and bodies to ``POST /api/studies``), ``feedback`` (hostile JSON to a study's
feedback), ``stow`` (hostile STOW-RS requests to ``POST /dicomweb/studies``). Per door at most ``--count``
examples and ``--minutes`` minutes. Goals: 0 crashes or hangs (the process stays up, its API and DICOM port
answer), every bad input answered with a clear status (a C-STORE status, an A-ABORT / A-ASSOCIATE-RJ, an HTTP
4xx with a ``detail``, or a STOW-RS Store Instances Response), 0 acknowledged instances (C-STORE success, or
listed as stored by STOW-RS) missing from the inbox after the run, no analysis job failed through our fault
(a hostile input that is accepted is analysed: its job may fail only as the input's fault), RSS bounded (peak
within ``RSS_BOUND`` x the RSS after start-up and one phantom analysis).

Run: ``python -m bench.fuzz [--count 10000] [--minutes 20] [--doors dimse,upload,feedback,stow] [--seed 1]``.
Writes bench/results/fuzz.json and prints one line per door.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from hypothesis import HealthCheck, Phase, given, seed, settings

from bench.common import write_result
from bench.fuzz_cases import (ESCAPE, FEEDBACK_OK, STOW_OK, UPLOAD_OK, DimseCase, FeedbackCase, StowCase,
                              UploadCase, dimse_cases, feedback_cases, stow_cases, upload_cases)
from bench.raw_dicom import RawAssociation
from bench.serve_process import RssSampler, ServeProcess, tree_rss_mb

RSS_BOUND = 2.0
LIVENESS_EVERY = 25
DOORS = ("dimse", "upload", "feedback", "stow")
STORED_SEQUENCE, INSTANCE_UID = "00081199", "00081155"  # Store Instances Response: ReferencedSOPSequence


@dataclass
class Door:
    """What one door saw: outcome counts, findings (input + what went wrong), acknowledged SOP UIDs."""

    name: str
    outcomes: Counter = field(default_factory=Counter)
    findings: list[dict] = field(default_factory=list)
    acked: set[str] = field(default_factory=set)
    examples: int = 0
    seconds: float = 0.0
    kind_seconds: Counter = field(default_factory=Counter)  # where the door's time goes, per case kind
    kind_examples: Counter = field(default_factory=Counter)
    rss_jumps: list[tuple[float, str]] = field(default_factory=list)  # (MiB the tree grew during it, case)

    def finding(self, case, problem: str) -> None:
        self.findings.append({"case": repr(case)[:600], "problem": problem[:600]})

    def summary(self) -> dict:
        slowest = {k: {"examples": self.kind_examples[k], "seconds": round(t, 1),
                       "mean_ms": round(1e3 * t / self.kind_examples[k])} for k, t in self.kind_seconds.most_common(12)}
        return {"examples": self.examples, "seconds": round(self.seconds, 1), "findings": len(self.findings),
                "examples_of_findings": self.findings[:20], "outcomes": dict(self.outcomes.most_common(40)),
                "slowest_kinds": slowest,
                "largest_rss_jumps": [{"mib": round(m, 1), "case": c} for m, c in sorted(self.rss_jumps)[-5:][::-1]]}


# ---------------------------------------------------------------------------------------------- one example
def try_dimse(svc: ServeProcess, case: DimseCase, door: Door) -> None:
    with RawAssociation(svc.port) as assoc:
        if case.store or case.associate:
            reply = assoc.associate(case.context_sop_class or "1.2.840.10008.5.1.4.1.1.4",
                                    case.transfer_syntax or "1.2.840.10008.1.2.1")
            if reply.kind != "accepted":
                door.finding(case, f"a valid A-ASSOCIATE-RQ got {reply.kind}")
                return
        if case.store:
            reply = assoc.store(case.sop_class, case.command_sop, case.data, max_pdu=case.max_pdu)
            if reply.kind != "status" or reply.status is None:
                door.finding(case, f"C-STORE answered with {reply.kind}, not a status")
                return
            door.outcomes[f"status 0x{reply.status:04X}"] += 1
            if reply.status == 0x0000:
                door.acked.add(case.command_sop)
            released = assoc.release()
            if released.kind != "released":
                door.finding(case, f"A-RELEASE-RQ after the C-STORE got {released.kind}")
            return
        assoc.send(case.raw)
        assoc.hang_up()
        reply = assoc.reply()
        while reply.kind == "accepted":  # a mutated request may still be valid: then the node sees our EOF
            reply = assoc.reply()
        door.outcomes[f"{case.name}: {reply.kind}"] += 1
        if reply.kind not in case.expect:
            door.finding(case, f"got {reply.kind}, expected one of {sorted(case.expect)}")


def _clear(response: httpx.Response, allowed: set[int]) -> str | None:
    """None when the answer is an allowed status and a 4xx says why; else the problem."""
    if response.status_code not in allowed:
        return f"HTTP {response.status_code}: {response.text[:300]}"
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail")
        except ValueError:
            detail = None
        if not detail:
            return f"HTTP {response.status_code} without a detail: {response.text[:200]}"
    return None


def try_upload(svc: ServeProcess, client: httpx.Client, case: UploadCase, door: Door) -> None:
    url = f"{svc.url}/api/studies"
    if case.multipart:
        response = client.post(url, files=[("files", (n, b, "application/octet-stream")) for n, b in case.files])
    else:
        headers = dict(svc.headers)
        if case.content_type is not None:
            headers["Content-Type"] = case.content_type
        params = {"filename": case.filename} if case.filename else {}
        response = client.post(url, content=case.files[0][1], headers=headers, params=params)
    door.outcomes[f"{case.name.split(':')[0]} {response.status_code}"] += 1
    problem = _clear(response, UPLOAD_OK)
    if problem:
        door.finding(case, problem)


def try_feedback(svc: ServeProcess, client: httpx.Client, study: str, case: FeedbackCase, door: Door) -> None:
    target = case.study if case.study is not None else study
    headers = dict(svc.headers)
    if case.content_type:
        headers["Content-Type"] = case.content_type
    response = client.post(f"{svc.url}/api/studies/{target}/feedback", content=case.body, headers=headers)
    door.outcomes[f"{case.name} {response.status_code}"] += 1
    problem = _clear(response, FEEDBACK_OK)
    if problem:
        door.finding(case, problem)


def try_stow(svc: ServeProcess, client: httpx.Client, case: StowCase, door: Door) -> None:
    """A 4xx must say why (``detail``); 200/202/409 must be a Store Instances Response, and every instance it lists
    as stored counts as acknowledged (checked against the inbox after the run)."""
    headers = {**svc.headers, "Content-Type": case.content_type, **({"Accept": case.accept} if case.accept else {})}
    path = "/dicomweb/studies" + (f"/{case.study}" if case.study is not None else "")
    response = client.post(f"{svc.url}{path}", content=case.body, headers=headers)
    door.outcomes[f"{case_kind(case)} {response.status_code}"] += 1
    if response.status_code not in (200, 202, 409):
        problem = _clear(response, STOW_OK)
        if problem:
            door.finding(case, problem)
        return
    if "json" not in response.headers.get("content-type", ""):
        return  # the XML rendering (Accept asked for it): its status was checked
    try:
        body = response.json()
        stored = body.get(STORED_SEQUENCE, {}).get("Value", [])
        door.acked |= {item[INSTANCE_UID]["Value"][0] for item in stored}
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        door.finding(case, f"HTTP {response.status_code} without a readable Store Instances Response ({exc!r}): "
                           f"{response.text[:200]}")
        return
    if (response.status_code == 409) != (not stored):
        door.finding(case, f"HTTP {response.status_code} but {len(stored)} instance(s) listed as stored")


# ---------------------------------------------------------------------------------------------- doors
def case_kind(case) -> str:
    """The case's kind: its name's first part, and its second when that is one word (``zip:bomb``, ``raw:mha``,
    ``store:flip``; ``store:flip+vr`` is ``store``), so that the kinds stay few."""
    parts = str(getattr(case, "name", case)).split(":")
    return ":".join(parts[:2]) if len(parts) > 1 and re.fullmatch(r"[a-z_]+", parts[1]) else parts[0]


def run_door(name: str, strategy, attempt, svc: ServeProcess, sampler: RssSampler, count: int, seconds: float,
             rng_seed: int) -> Door:
    """Up to ``count`` hypothesis examples (or ``seconds``); liveness checked every LIVENESS_EVERY examples.
    RSS samples are labelled ``door/kind`` and the time of each example is added to its kind."""
    door = Door(name)
    t0 = time.monotonic()
    end = t0 + seconds

    @seed(rng_seed)
    @settings(max_examples=count, deadline=None, database=None, phases=[Phase.generate], print_blob=False,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def prop(case) -> None:
        if time.monotonic() > end or door.findings and door.findings[-1]["problem"].startswith("service down"):
            return
        door.examples += 1
        kind = case_kind(case)
        sampler.label = f"{name}/{kind}"
        started, rss_before = time.monotonic(), tree_rss_mb(svc.proc.pid)
        try:
            attempt(case, door)
        except (httpx.TimeoutException, TimeoutError) as exc:
            door.finding(case, f"hang: no answer in time ({type(exc).__name__})")
        except (httpx.HTTPError, OSError) as exc:
            door.finding(case, f"connection failed: {type(exc).__name__}: {exc}")
        door.kind_seconds[kind] += time.monotonic() - started
        door.kind_examples[kind] += 1
        jump = tree_rss_mb(svc.proc.pid) - rss_before
        if jump > 50:  # which input made the service grow (the sampler's labels only say what ran around then)
            door.rss_jumps.append((jump, repr(case)[:300]))
        if door.examples % LIVENESS_EVERY == 0 and not svc.alive():
            door.finding(case, "service down after this example")

    prop()
    if not svc.alive():
        door.finding("end of door", "service down at the end of the door")
    door.seconds = time.monotonic() - t0
    return door


def analysed_study(svc: ServeProcess, client: httpx.Client, work: Path) -> str:
    """Upload one phantom volume and wait for its analysis: the study the feedback door writes to."""
    from pipelines.phantom import generate_case, write_case

    folder = write_case(generate_case(424_242), work / "phantom", formats=("mha",))
    data = (Path(folder) / "image.mha").read_bytes()
    response = client.post(f"{svc.url}/api/studies", params={"wait": 240},
                           files=[("files", ("image.mha", data, "application/octet-stream"))], timeout=300)
    if response.status_code != 201:
        raise RuntimeError(f"phantom upload: HTTP {response.status_code} {response.text[:300]}")
    return response.json()["study_instance_uid"]


def escaped_files(work: Path) -> list[str]:
    """Files named like the traversal/symlink zip members outside a staging folder (there must be none)."""
    found = [str(p) for p in Path(tempfile.gettempdir()).glob(f"*{ESCAPE}*")]
    for dirpath, _, files in os.walk(work):
        found += [os.path.join(dirpath, f) for f in files if ESCAPE in f and "unzipped" not in dirpath]
    return found


def fuzz(doors: list[str], count: int, seconds: float, rng_seed: int, work: Path) -> dict:
    svc = ServeProcess(work / "data", LDH_API_MAX_UPLOAD_MB="64", LDH_NODE_QUIET_SECONDS="1").start()
    sampler = RssSampler(svc.proc.pid)
    sampler.start()
    baseline = sampler.mark("baseline")
    results: dict[str, Door] = {}
    acked: set[str] = set()
    try:
        with httpx.Client(headers=svc.headers, timeout=120) as client:
            # always: the baseline must include the models' working memory, whichever doors run
            study = analysed_study(svc, client, work)
            baseline = max(baseline, sampler.mark("after warm-up"))
            attempts = {"dimse": (dimse_cases(), lambda c, d: try_dimse(svc, c, d)),
                        "upload": (upload_cases(), lambda c, d: try_upload(svc, client, c, d)),
                        "feedback": (feedback_cases(), lambda c, d: try_feedback(svc, client, study, c, d)),
                        "stow": (stow_cases(), lambda c, d: try_stow(svc, client, c, d))}
            for name in doors:
                sampler.mark(name)
                strategy, attempt = attempts[name]
                results[name] = run_door(name, strategy, attempt, svc, sampler, count, seconds, rng_seed)
                acked |= results[name].acked
            history = client.get(f"{svc.url}/api/studies/{study}/feedback").status_code \
                if "feedback" in doors else None
    finally:
        sampler.mark("end")
        end_rss = sampler.samples[-1][2]
        sampler.stop()
        exit_code = svc.stop()
    missing = svc.missing_instances(acked)
    jobs, jobs_failed_ours = svc.job_outcomes()
    escaped = escaped_files(work)
    peak = sampler.peak()
    per_door = {n: d.summary() | {"rss_peak_mb": round(sampler.peak(n), 1),
                                  "rss_peak_by_kind_mb": sampler.peaks_under(n)} for n, d in results.items()}
    findings = sum(d["findings"] for d in per_door.values())
    return {
        "count_per_door": count, "max_seconds_per_door": seconds, "seed": rng_seed, "doors": per_door,
        "acknowledged_instances": len(acked), "acknowledged_missing": len(missing), "missing": missing[:20],
        "escaped_files": escaped, "feedback_history_status": history, "serve_exit_code": exit_code,
        "jobs": jobs, "jobs_failed_ours": len(jobs_failed_ours), "jobs_failed_ours_examples": jobs_failed_ours[:20],
        "rss_mb": {"baseline": round(baseline, 1), "peak": round(peak, 1), "end": round(end_rss, 1),
                   "bound": round(baseline * RSS_BOUND, 1)},
        "goals_met": findings == 0 and not missing and not escaped and not jobs_failed_ours
        and peak <= baseline * RSS_BOUND
        and exit_code == 0 and history in (None, 200),
        "serve_log_tail": svc.log_tail(3000),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=10_000, help="examples per door")
    parser.add_argument("--minutes", type=float, default=20.0, help="time limit per door")
    parser.add_argument("--doors", default=",".join(DOORS))
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    doors = [d for d in args.doors.split(",") if d]
    unknown = set(doors) - set(DOORS)
    if unknown:
        raise SystemExit(f"unknown door(s) {sorted(unknown)}; choose from {DOORS}")
    work = Path(tempfile.mkdtemp(prefix="fuzz-", dir=os.environ.get("BENCH_TMP")))
    try:
        result = fuzz(doors, args.count, args.minutes * 60, args.seed, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    path = write_result("fuzz", result)
    for name, door in result["doors"].items():
        print(f"{name}: {door['examples']} examples in {door['seconds']:.0f} s, {door['findings']} findings, "
              f"RSS peak {door['rss_peak_mb']:.0f} MiB")
    rss = result["rss_mb"]
    print(f"fuzz: {'goals met' if result['goals_met'] else 'GOALS NOT MET'}; acknowledged "
          f"{result['acknowledged_instances']}, missing {result['acknowledged_missing']}; escaped files "
          f"{len(result['escaped_files'])}; jobs {result['jobs']}, failed through our fault "
          f"{result['jobs_failed_ours']}; RSS {rss['baseline']:.0f} -> peak {rss['peak']:.0f} MiB "
          f"(bound {rss['bound']:.0f}); serve exit {result['serve_exit_code']}; wrote {path}")


if __name__ == "__main__":
    main()
