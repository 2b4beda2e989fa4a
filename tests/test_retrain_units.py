"""Retraining pieces without training: supersession + watermark, the gate, promote/rollback, the schedule,
Vertex submit/schedule (only the Google API clients mocked), hot reload under concurrent requests."""

from __future__ import annotations

import json
from pathlib import Path
from unittest import mock

import pytest

from ai_service.config import Settings
from ai_service.errors import ModelError
from ai_service.feedback import FeedbackStore
from ai_service.registry import ModelRegistry
from ai_service.storage import LocalStorage
from pipelines.retrain.collect import collect
from pipelines.retrain.promotion import GateSettings, gate, history, rollback, set_production


def rec(study, kind, rid):
    return {"record_id": rid, "kind": kind, "study_instance_uid": study, "supersedes": []}


def test_supersession_and_new_records_since_last_dataset(tmp_path):
    storage = LocalStorage(tmp_path)
    fb = FeedbackStore(storage)
    fb.add(rec("1.1", "accept", "20260101T000000000000Z-a"))
    fb.add(rec("1.1", "correction", "20260102T000000000000Z-b"))  # supersedes the accept
    fb.add(rec("1.1", "correction", "20260103T000000000000Z-c"))  # supersedes the earlier correction
    fb.add(rec("1.2", "accept", "20260101T000000000000Z-d"))
    c = collect(storage, min_new=3)
    assert [r["record_id"] for r in c.records] == ["20260101T000000000000Z-d", "20260103T000000000000Z-c"]
    assert not c.enough and "not enough new feedback: 2 new record(s)" in c.message
    storage.write_bytes("datasets/ds-1/manifest.json", json.dumps({"record_ids": c.new_ids}).encode())
    fb.add(rec("1.2", "correction", "20260104T000000000000Z-e"))  # a new record of an exported study counts
    c = collect(storage, min_new=1)
    assert c.previous_version == "ds-1" and c.new_ids == ["20260104T000000000000Z-e"] and c.enough


def m(holdout_auc, frozen_auc, sens, lower_bound=0.01):
    """Gate input for one model; ``lower_bound`` is the candidate's bootstrap bound (ignored for production)."""
    return {"holdout": {"auc": holdout_auc, "vs_production": {"lower_bound": lower_bound, "confidence": 0.95,
                                                              "patients": 12}},
            "frozen": {"auc": frozen_auc}, "pooled": {"sensitivity": sens}}


G = GateSettings(min_auc_gain=0.02, max_sens_loss=0.0, max_frozen_auc_loss=0.02, min_gain_lower_bound=0.0,
                 min_holdout_auc=0.80)


def failed(decision, check):
    return not decision.promote and any(r.startswith(f"FAILED: {check}") for r in decision.reasons)


def test_gate_accepts_better_and_refuses_worse():
    better = gate(m(0.93, 0.97, 0.90), m(0.87, 0.975, 0.88), G)
    assert better.promote and all(r.startswith("passed: ") for r in better.reasons)
    assert failed(gate(m(0.85, 0.97, 0.90, lower_bound=-0.08), m(0.87, 0.97, 0.90), G), "hold-out AUC 0.8500 vs")
    assert failed(gate(m(0.95, 0.90, 0.90), m(0.87, 0.97, 0.90), G), "frozen-set AUC")
    assert failed(gate(m(0.95, 0.97, 0.85), m(0.87, 0.97, 0.90), G), "sensitivity")
    assert not gate(m(float("nan"), 0.97, 0.9), m(0.8, 0.97, 0.9), G).promote


def test_gate_refuses_a_gain_that_is_noise_or_labels_no_model_agrees_with():
    # a +0.06 gain whose bootstrap bound over patients reaches below zero: could be chance
    noisy_gain = gate(m(0.93, 0.97, 0.90, lower_bound=-0.01), m(0.87, 0.97, 0.90), G)
    assert failed(noisy_gain, "hold-out AUC gain lower bound -0.0100")
    # the flipped-label control's pattern: a real-looking gain, but against reviews neither model can follow
    careless = gate(m(0.48, 0.97, 0.90, lower_bound=0.03), m(0.39, 0.97, 0.90), G)
    assert failed(careless, "hold-out AUC 0.4800 against the reviewers' labels")
    assert sum(r.startswith("FAILED") for r in careless.reasons) == 1  # the other checks pass and say so
    # fewer than two hold-out patients: nothing to bound the gain with
    assert failed(gate(m(0.93, 0.97, 0.90, lower_bound=float("nan")), m(0.87, 0.97, 0.90), G), "hold-out AUC gain")


def test_paired_bootstrap_bounds_a_consistent_gain_above_zero_and_a_random_one_not():
    import numpy as np

    from pipelines.retrain.bootstrap import paired_auc_gain

    rng = np.random.default_rng(3)
    patients = np.repeat(np.arange(20), 5)
    truth = (rng.random(100) < 0.4).astype(float)
    production = truth + rng.normal(0, 1.0, 100)
    better = paired_auc_gain(truth, truth + rng.normal(0, 0.3, 100), production, patients)
    assert better.gain > 0.1 and 0 < better.lower_bound < better.gain and better.patients == 20
    same = paired_auc_gain(truth, production + rng.normal(0, 0.05, 100), production, patients)
    assert same.lower_bound < 0 < same.lower_bound + 0.1
    assert np.isnan(paired_auc_gain(truth, production, production, np.zeros(100)).lower_bound)  # one patient
    empty = paired_auc_gain(np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0, dtype="U8"))  # no hold-out patient
    assert empty.patients == 0 and np.isnan(empty.gain) and np.isnan(empty.lower_bound)


def make_version(root, name, version):
    (root / name / version).mkdir(parents=True)
    (root / name / version / "model.keras").write_bytes(b"x")
    (root / name / version / "card.json").write_text("{}")


def test_promote_and_rollback_keep_a_history(tmp_path, capsys):
    from ai_service.cli import main

    for v in ("v1", "v2", "v3"):
        make_version(tmp_path, "m", v)
    reg = ModelRegistry(tmp_path)
    reg.set_alias("m", "production", "v1")
    with pytest.raises(ModelError, match="no earlier production version"):
        rollback(reg, "m")
    set_production(reg, "m", "v2", action="promote", reason="gate", run_id="run-1")
    with mock.patch("ai_service.cli.Settings", lambda: Settings(_env_file=None, model_store=tmp_path)):
        assert main(["models", "promote", "m", "v3"]) == 0
        assert reg.aliases("m")["production"] == "v3"
        assert main(["models", "rollback", "m"]) == 0
    assert reg.aliases("m")["production"] == "v2"
    assert "production v3 -> v2 (rollback)" in capsys.readouterr().out
    assert [(h["from"], h["to"], h["action"]) for h in history(reg, "m")] == [
        ("v1", "v2", "promote"), ("v2", "v3", "promote"), ("v3", "v2", "rollback")]
    with pytest.raises(ModelError):
        set_production(reg, "m", "v9", action="promote", reason="x")


def test_scheduler_runs_at_most_one_pipeline_at_a_time(tmp_path):
    from pipelines.retrain.scheduler import JOB_ID, ScheduleError, start_scheduler

    assert start_scheduler(Settings(_env_file=None, pipeline_cron="")) is None
    with pytest.raises(ScheduleError, match="LDH_PIPELINE_CRON 'every day'"):
        start_scheduler(Settings(_env_file=None, pipeline_cron="every day"))
    s = start_scheduler(Settings(_env_file=None, pipeline_cron="0 3 * * 1"), job=lambda settings: 0)
    try:
        job = s.get_job(JOB_ID)
        assert job.max_instances == 1 and job.coalesce and "day_of_week='1'" in str(job.trigger)
    finally:
        s.shutdown(wait=False)


def vertex_settings(**kw):
    values = dict(vertex_project="proj", vertex_location="europe-west4", vertex_pipeline_root="gs://bucket/root",
                  vertex_service_account="pipelines@proj.iam.gserviceaccount.com", model_store="gs://bucket/models",
                  data_dir="gs://bucket/data")
    values.update(kw)
    return Settings(_env_file=None, **values)


def test_vertex_submit_and_schedule_with_mocked_google_clients(tmp_path):
    from google.cloud.aiplatform_v1.services.pipeline_service import PipelineServiceClient
    from google.cloud.aiplatform_v1 import types
    from google.cloud.aiplatform_v1.services.schedule_service import ScheduleServiceClient

    from pipelines.retrain import runner
    from pipelines.retrain.config import RetrainConfig

    settings = vertex_settings()
    cfg = RetrainConfig.from_settings(settings)
    template = runner.compile_pipeline(settings, tmp_path / "p.yaml")
    with mock.patch("google.auth.default", return_value=(mock.MagicMock(), "proj")), \
         mock.patch("google.cloud.aiplatform.utils.gcs_utils."
                    "create_gcs_bucket_for_pipeline_artifacts_if_it_does_not_exist"), \
         mock.patch.object(PipelineServiceClient, "create_pipeline_job") as create_job, \
         mock.patch.object(ScheduleServiceClient, "create_schedule") as create_schedule:
        create_job.return_value = types.PipelineJob(name="projects/proj/locations/europe-west4/pipelineJobs/run-x")
        runner.submit(settings, cfg, template, "run-x")
        job = create_job.call_args.kwargs["pipeline_job"]
        assert create_job.call_args.kwargs["pipeline_job_id"] == "run-x"
        assert job.service_account == "pipelines@proj.iam.gserviceaccount.com"
        assert job.runtime_config.gcs_output_directory == "gs://bucket/root"
        config = json.loads(job.runtime_config.parameter_values["config_json"])
        assert (config["data_dir"], config["model_store"]) == ("gs://bucket/data", "gs://bucket/models")
        create_schedule.return_value = types.Schedule(name="projects/proj/locations/europe-west4/schedules/1")
        runner.schedule(settings, cfg, template, "0 3 * * 1")
        sched = create_schedule.call_args.kwargs["schedule"]
        assert sched.cron == "0 3 * * 1" and sched.max_concurrent_run_count == 1
    with pytest.raises(runner.PipelineSetupError, match="LDH_VERTEX_SERVICE_ACCOUNT"):
        runner.submit(vertex_settings(vertex_service_account=None), cfg, template)
    local = vertex_settings(data_dir=Path("/data"))  # the steps share no disk: a local path would split the data
    with pytest.raises(runner.PipelineSetupError, match="must be gs:// URIs: LDH_DATA_DIR=/data$"):
        runner.submit(local, RetrainConfig.from_settings(local), template)


def test_identifier_scan_finds_names_ids_in_file_names_and_bytes(tmp_path):
    from pipelines.retrain.deid import patient_key, scan_for_identifiers, split_of

    (tmp_path / "crops").mkdir()
    (tmp_path / "crops" / "PH0000001234-L4-L5.npy").write_bytes(b"\x00" * 10)
    (tmp_path / "labels.csv").write_text("file,label\nx,1\n# Doe Jane\n")
    (tmp_path / "ok.npy").write_bytes("ACC-99".encode("utf-16-le"))
    hits = scan_for_identifiers(tmp_path, ["PH0000001234", "Doe^Jane", "ACC-99", "1"])
    assert {h.split(":")[0] for h in hits} == {"crops/PH0000001234-L4-L5.npy", "labels.csv", "ok.npy"}
    key = patient_key(b"k", "PH0000001234")
    assert "PH0000001234" not in key and key == patient_key(b"k", "PH0000001234") != patient_key(b"j", "PH0000001234")
    assert split_of(key, 0.25, 0.15) == split_of(key, 0.25, 0.15) in ("train", "val", "test")


def test_holdout_scores_every_slice_of_a_herniated_disc_but_training_learns_only_the_reviewers(tmp_path):
    import io

    import numpy as np

    from pipelines.retrain.dataset import SCORED_ONLY, load_split

    storage = LocalStorage(tmp_path)
    rows = ["file,label,level,slice,split,patient,disc_label"]
    for level, s, label in (("L4-L5", 3, 1), ("L4-L5", 4, SCORED_ONLY), ("L5-S1", 3, 0), ("L5-S1", 4, 0)):
        buf = io.BytesIO()
        np.save(buf, np.full((64, 64, 2), s, np.float16))
        storage.write_bytes(f"datasets/ds-1/crops/p-{level}-s{s:03d}.npy", buf.getvalue())
        rows.append(f"crops/p-{level}-s{s:03d}.npy,{label},{level},{s},test,p,{int(level == 'L4-L5')}")
    storage.write_bytes("datasets/ds-1/labels.csv", ("\n".join(rows) + "\n").encode())
    train, _ = load_split(storage, "ds-1", "test")
    assert train.y.tolist() == [1, 0, 0]  # the reviewer's slice of the herniated disc, every slice of the healthy one
    scored, levels = load_split(storage, "ds-1", "test", for_evaluation=True)
    assert len(scored.y) == 4 and scored.disc_y.tolist() == [1, 1, 0, 0] and levels == ["L4-L5"] * 2 + ["L5-S1"] * 2
