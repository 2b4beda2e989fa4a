"""Find a study's job and finished result (a dependency of every per-study route)."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Depends, HTTPException

from ai_service.api.deps import get_state
from ai_service.api.state import AppState
from ai_service.findings import Findings
from ai_service.jobs import Job
from ai_service.results import read_findings
from ai_service.storage import NotFound


@dataclass
class StudyResult:
    study_uid: str
    job: Job
    prefix: str
    findings: Findings


def study_job(study: str, state: AppState = Depends(get_state)) -> Job:
    jobs = state.jobs.for_study(study)
    if not jobs and state.bridge is not None:
        node_job = state.bridge.latest_job(study)  # analysed by the DICOM node (C-STORE from a PACS)
        if node_job is not None:
            return node_job
    if not jobs:
        raise HTTPException(404, f"study {study} is unknown here (upload it first)")
    return jobs[0]


def study_result(study: str, state: AppState = Depends(get_state)) -> StudyResult:
    job = state.jobs.latest_done(study)
    if job is None and state.bridge is not None:
        job = state.bridge.latest_job(study)
    if job is None:
        latest = study_job(study, state)
        if latest.state == "failed":
            raise HTTPException(409, f"the analysis of study {study} failed: {latest.error}")
        raise HTTPException(409, f"study {study} is still being analysed (job {latest.id} is {latest.state}); "
                                 "poll /api/jobs/{id} until it is done")
    try:
        findings = read_findings(state.storage, job.result_prefix)
    except NotFound:
        raise HTTPException(404, f"the result of study {study} is missing from the storage") from None
    return StudyResult(study, job, job.result_prefix, findings)
