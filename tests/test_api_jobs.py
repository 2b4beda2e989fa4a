"""The API's job table and worker: idempotent keys, failed jobs re-queued, restart recovery, error statuses."""

from __future__ import annotations

from ai_service.errors import InputError
from ai_service.jobs import JobStore, Worker


def test_same_series_and_model_is_one_job(tmp_path):
    jobs = JobStore(tmp_path / "jobs.sqlite")
    a, created_a = jobs.submit("1.2", "1.2.3", "seg+cls", "upload-mha", "upload", "studies/1.2/1.2.3")
    b, created_b = jobs.submit("1.2", "1.2.3", "seg+cls", "upload-mha", "upload", "studies/1.2/1.2.3")
    c, created_c = jobs.submit("1.2", "1.2.3", "seg2+cls", "upload-mha", "upload", "studies/1.2/1.2.3")
    assert created_a and not created_b and created_c
    assert a.id == b.id != c.id
    assert jobs.counts()["queued"] == 2


def test_running_jobs_are_queued_again_after_a_restart(tmp_path):
    jobs = JobStore(tmp_path / "jobs.sqlite")
    job, _ = jobs.submit("1.2", "1.2.3", "v", "upload-mha")
    assert jobs.claim().id == job.id and jobs.get(job.id).state == "running"
    again = JobStore(tmp_path / "jobs.sqlite")  # the process died and started again
    assert again.get(job.id).state == "queued"
    assert again.claim().id == job.id


def _run(jobs, handler):
    worker = Worker(jobs, handler)
    job = jobs.claim()
    worker.run_one(job)
    return jobs.get(job.id)


def test_worker_records_input_errors_as_422_and_ours_as_500_and_failed_jobs_can_be_resubmitted(tmp_path):
    jobs = JobStore(tmp_path / "jobs.sqlite")
    jobs.submit("1", "1.1", "v", "upload-mha")

    def refuse(job, report):
        raise InputError("no lumbar spine was found in this series")

    failed = _run(jobs, refuse)
    assert (failed.state, failed.error_status, failed.error) == ("failed", 422, "no lumbar spine was found in this series")
    again, created = jobs.submit("1", "1.1", "v", "upload-mha")
    assert created and again.id == failed.id and again.state == "queued" and again.error is None

    def crash(job, report):
        raise ZeroDivisionError("boom")

    crashed = _run(jobs, crash)
    assert crashed.error_status == 500 and "ZeroDivisionError: boom" in crashed.error

    jobs.submit("1", "1.1", "v", "upload-mha")

    def ok(job, report):
        report("analysing", 0.5)
        return "results/1/v/1.1"

    done = _run(jobs, ok)
    assert (done.state, done.progress, done.result_prefix) == ("done", 1.0, "results/1/v/1.1")
    assert jobs.latest_done("1").id == done.id


def test_wait_returns_when_the_job_finishes(tmp_path):
    jobs = JobStore(tmp_path / "jobs.sqlite")
    job, _ = jobs.submit("1", "1.1", "v", "upload-mha")
    worker = Worker(jobs, lambda j, report: "results/x")
    worker.start()
    try:
        assert jobs.wait(job.id, 10).state == "done"
    finally:
        worker.stop()
    assert not worker.alive
