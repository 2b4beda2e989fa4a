"""The shipped models end to end: a fresh phantom (never seen in training) analysed through ``ldh analyze``."""

import os
import subprocess
import sys

import cv2
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from scipy import ndimage

from ai_service.config import Settings
from ai_service.encoders import read_sr_findings
from ai_service.engine import InferenceEngine
from ai_service.findings import Findings
from ai_service.labels import LEVELS, disc_label
from ai_service.volume import load_volume
from pipelines.phantom import generate_case, write_case

TEST_SEED = 777_001  # not a training seed (training uses SeedSequence children of 11/22 and their +1000)
DICE_FLOOR = 0.85


@pytest.fixture(scope="module")
def engine():
    return InferenceEngine(Settings())


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    case = generate_case(TEST_SEED, herniation_rate=0.5)
    out = tmp_path_factory.mktemp("phantom")
    return case, write_case(case, out / "case", formats=("mha", "dicom", "png"))


def present_levels(case):
    return [lv["level"] for lv in case.truth["levels"] if lv["present"]]


def test_engine_finds_the_discs_in_order_with_dice_above_floor(engine, case):
    case, path = case
    analysis = engine.analyze(load_volume(path / "image.mha"))
    found = [d.level for d in analysis.findings.discs]
    assert found == present_levels(case)
    for level in found:
        gt = case.labels == disc_label(level)
        pr = analysis.label_map == disc_label(level)
        dice = 2 * (gt & pr).sum() / (gt.sum() + pr.sum())
        assert dice > DICE_FLOOR, f"{level}: Dice {dice:.3f}"
    rows = [d.box[1] for d in analysis.findings.discs]
    assert rows == sorted(rows)  # head→feet on this grid


def test_dicom_png_and_mha_inputs_agree(engine, case):
    case, path = case
    by_kind = {}
    for name, source in (("mha", path / "image.mha"), ("dicom", path / "dicom"), ("png", path / "png")):
        volume = load_volume(source, pixel_spacing_mm=case.spacing[0], slice_spacing_mm=case.spacing[2])
        by_kind[name] = engine.analyze(volume).findings
    assert by_kind["dicom"].study_instance_uid == case.truth["study_instance_uid"]
    assert all(d.sop_instance_uid for d in by_kind["dicom"].discs)
    for kind in ("dicom", "png"):
        assert [d.level for d in by_kind[kind].discs] == [d.level for d in by_kind["mha"].discs]
        for a, b in zip(by_kind[kind].discs, by_kind["mha"].discs):
            assert a.slice_index == b.slice_index or abs(a.probability - b.probability) < 0.2
            assert np.abs(np.subtract(a.extent.box, b.extent.box)).max() <= 3


def ldh(*args, cwd=None):
    env = dict(os.environ, LDH_LOG_LEVEL="WARNING")
    return subprocess.run([sys.executable, "-m", "ai_service.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=300)


def test_cli_analyze_writes_findings_label_map_and_preview(case, tmp_path):
    case, path = case
    out = tmp_path / "result"
    proc = ldh("analyze", path / "dicom", "--out", out)
    assert proc.returncode == 0, proc.stderr
    findings = Findings.load(out / "findings.json")
    assert [d.level for d in findings.discs] == present_levels(case)
    assert findings.series_instance_uid == case.truth["series_instance_uid"]
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "discs.mha")))
    assert labels.shape == case.labels.shape
    assert set(np.unique(labels)) <= {0, *[disc_label(lv) for lv in LEVELS]}
    for disc in findings.discs:  # the box is the label's bounding box on the key slice
        rows, cols = np.nonzero(labels[disc.slice_index] == disc_label(disc.level))
        assert list(disc.box) == [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]
    preview = cv2.imread(str(out / "preview.png"))
    assert preview is not None and min(preview.shape[:2]) >= 512
    assert "P(herniation)" in proc.stdout
    for name in ("findings.json", "discs.mha", "preview.png", "seg.dcm", "sr.dcm", "preview.dcm"):
        assert f"wrote {name}: " in proc.stdout
    # a DICOM source also gets SEG + SR (+ SC preview) in its own study, and the SR says what findings.json says
    sr = pydicom.dcmread(out / "sr.dcm")
    seg = pydicom.dcmread(out / "seg.dcm")
    assert sr.StudyInstanceUID == seg.StudyInstanceUID == case.truth["study_instance_uid"]
    assert pydicom.dcmread(out / "preview.dcm").Modality in ("OT", "MR")
    from_sr = {d.level: d for d in read_sr_findings(sr)}
    for disc in findings.discs:
        assert from_sr[disc.level].box == tuple(disc.box)
        assert from_sr[disc.level].herniation == disc.herniation
        assert abs(from_sr[disc.level].probability - disc.probability) < 1e-6


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: d, "empty folder"),
        (lambda d: (d / "a.txt").write_text("hello") and d / "a.txt", "not DICOM"),
        (lambda d: cv2.imwrite(str(d / "x.png"), np.zeros((8, 8), np.uint8)) and d / "x.png", "single 2D image"),
        (lambda d: (d / "v.mha").write_bytes(b"ObjectType = Image\nNDims = 3\n") and d / "v.mha", "corrupt"),
    ],
    ids=["empty-folder", "text-file", "single-png", "corrupt-mha"],
)
def test_cli_bad_input_exits_2_with_one_sentence_and_no_output(tmp_path, make, message):
    src = tmp_path / "in"
    src.mkdir()
    target = make(src)
    out = tmp_path / "out"
    proc = ldh("analyze", target, "--out", out)
    assert proc.returncode == 2
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not out.exists() or not any(out.iterdir())


def test_cli_axial_series_is_refused(tmp_path):
    image = sitk.GetImageFromArray(np.zeros((24, 96, 96), np.int16))
    image.SetSpacing((0.8, 0.8, 4.0))
    sitk.WriteImage(image, str(tmp_path / "axial.mha"))
    proc = ldh("analyze", tmp_path / "axial.mha", "--out", tmp_path / "out")
    assert proc.returncode == 2 and "not a sagittal series" in proc.stderr


def test_cli_non_spine_sagittal_series_is_refused(tmp_path):
    rng = np.random.default_rng(5)
    blobs = ndimage.gaussian_filter(rng.random((12, 128, 128)), (0, 6, 6)) * 4000
    image = sitk.GetImageFromArray(blobs.astype(np.int16))
    image.SetSpacing((1.5, 1.5, 4.0))
    image.SetDirection((0.0, 0.0, -1.0, 1.0, 0.0, 0.0, 0.0, -1.0, 0.0))
    sitk.WriteImage(image, str(tmp_path / "noise.mha"))
    proc = ldh("analyze", tmp_path / "noise.mha", "--out", tmp_path / "out")
    assert proc.returncode == 2 and "no lumbar spine" in proc.stderr


def test_engine_gives_identical_findings_from_concurrent_threads(engine, case):
    from concurrent.futures import ThreadPoolExecutor

    _, path = case
    volume = load_volume(path / "image.mha")
    reference = engine.analyze(volume).findings
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda _: engine.analyze(volume).findings, range(3)))
    for findings in results:
        assert [(d.level, d.box, d.slice_index) for d in findings.discs] == [
            (d.level, d.box, d.slice_index) for d in reference.discs]
        assert all(abs(a.probability - b.probability) < 1e-4 for a, b in zip(findings.discs, reference.discs))


def test_cli_models_list_shows_production_versions():
    proc = ldh("models", "list")
    assert proc.returncode == 0, proc.stderr
    rows = [line.split("\t") for line in proc.stdout.strip().splitlines()]
    assert {r[0] for r in rows if "production" in r[2]} == {"disc-seg", "herniation-cls"}


def test_onnx_runtime_and_tensorflow_engines_give_the_same_findings(engine, case):
    """The shipped production versions (and the segmentation version's refiner) carry ONNX exports; the engine must
    use them and agree with TensorFlow."""
    _, path = case
    assert engine.runtimes == {"segmentation": "onnxruntime", "classification": "onnxruntime", "refiner": "onnxruntime"}
    volume = load_volume(path / "image.mha")
    fast = engine.analyze(volume)
    tf_engine = InferenceEngine(Settings(inference_runtime="tensorflow"))
    # the refiner works on rectangles of any size: a plain graph (XLA would recompile for each)
    assert tf_engine.runtimes == {"segmentation": "xla", "classification": "xla", "refiner": "tensorflow"}
    slow = tf_engine.analyze(volume)
    assert [(d.level, d.slice_index, d.box) for d in fast.findings.discs] == [
        (d.level, d.slice_index, d.box) for d in slow.findings.discs]
    assert all(abs(a.probability - b.probability) < 1e-3 for a, b in zip(fast.findings.discs, slow.findings.discs))
    assert (fast.label_map != slow.label_map).mean() < 1e-4  # arg-max ties at most
