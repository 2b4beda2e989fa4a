"""Synthetic lumbar MRI phantom: determinism, label/truth consistency, geometry, DICOM validity, CLI."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from ai_service.labels import LEVELS, disc_label, vertebra_label, VERTEBRAE
from pipelines.phantom import PROFILES, generate_case, generate_dataset, write_case
from pipelines.phantom import rng as phantom_rng
from pipelines.phantom.anatomy import sample_anatomy
from pipelines.phantom.scanner import sample_acquisition

DOCUMENTED = set(range(0, 8)) | set(range(99, 107)) | set(range(199, 206))  # ai_service/labels.py
CANAL = {4, 5, 7}
SEEDS = (0, 1, 2, 3)


@pytest.fixture(scope="module")
def pairs():
    """Same seeds with every present level herniated and with none: identical anatomy otherwise."""
    return {s: (generate_case(s, herniation_rate=1.0), generate_case(s, herniation_rate=0.0)) for s in SEEDS}


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("phantom")
    a = write_case(generate_case(42), root / "a")
    b = write_case(generate_case(42), root / "b")
    return a, b


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_seed_same_arrays_and_bytes(written):
    a, b = written
    fa, fb = _files(a), _files(b)
    assert set(fa) == set(fb)
    assert {"image.mha", "labels.mha", "truth.json", "dicom/IM0000.dcm", "png/slice_000.png"} <= set(fa)
    assert [k for k in fa if fa[k] != fb[k]] == []


def test_different_seeds_differ():
    a, b = generate_case(7), generate_case(8)
    assert a.image.shape != b.image.shape or not np.array_equal(a.image, b.image)
    assert a.truth["study_instance_uid"] != b.truth["study_instance_uid"]
    again = generate_case(7)
    assert np.array_equal(a.image, again.image) and np.array_equal(a.labels, again.labels)
    assert a.truth == again.truth


def test_dtypes_ranges_and_label_values(pairs):
    for case, _ in pairs.values():
        assert case.image.dtype == np.uint16 and case.labels.dtype == np.uint8
        assert case.image.shape == case.labels.shape
        assert int(case.image.max()) <= 4095
        assert set(np.unique(case.labels).tolist()) <= DOCUMENTED
        assert list(case.truth["shape"]) == list(case.labels.shape)


def _centroid_row(labels: np.ndarray, value: int) -> float:
    return float(np.nonzero(labels == value)[1].mean())


def test_discs_and_vertebrae_ordered_top_to_bottom(pairs):
    for case, _ in pairs.values():
        present = [v for v in range(200, 206) if (case.labels == v).any()]
        rows = [_centroid_row(case.labels, v) for v in present]
        assert rows == sorted(rows) and len(present) >= 4
        verts = [vertebra_label(v) for v in VERTEBRAE if (case.labels == vertebra_label(v)).any()]
        vrows = [_centroid_row(case.labels, v) for v in verts]
        assert vrows == sorted(vrows)
        assert [lv["level"] for lv in case.truth["levels"]] == list(LEVELS)


def _bbox(mask: np.ndarray) -> list[int]:
    ys, xs = np.nonzero(mask)
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


def test_truth_matches_labels(pairs):
    for case, plain in pairs.values():
        for c in (case, plain):
            for lv in c.truth["levels"]:
                mask = c.labels == disc_label(lv["level"])
                assert lv["present"] == bool(mask.any())
                if not lv["present"]:
                    assert lv["slice_index"] is None and lv["box"] is None and not lv["herniation"]
                    continue
                k = lv["slice_index"]
                assert 0 <= k < c.labels.shape[0]
                assert lv["box"] == _bbox(mask[k])
                if not lv["herniation"]:
                    assert k == int(np.argmax(mask.sum(axis=(1, 2))))
            # FOV edges never cut a reported disc
            edge = np.concatenate([c.labels[:, 0].ravel(), c.labels[:, -1].ravel()])
            assert not (set(np.unique(edge).tolist()) & set(range(201, 206)))


def test_herniation_rate_extremes(pairs):
    for case, plain in pairs.values():
        for lv in plain.truth["levels"]:
            assert lv["herniation"] is False and lv["herniation_side"] is None
        for lv in case.truth["levels"]:
            assert lv["herniation"] == lv["present"]
            if lv["herniation"]:
                assert lv["herniation_side"] in ("central", "left", "right")
                assert 1.0 <= lv["herniation_size_mm"] <= 12.0


def test_herniated_material_protrudes_into_the_canal(pairs):
    """Against the same seed without herniations: extra disc voxels lie behind the disc, in the canal."""
    for case, plain in pairs.values():
        assert case.image.shape == plain.image.shape
        for lv in case.truth["levels"]:
            if not lv["herniation"]:
                continue
            value = disc_label(lv["level"])
            extra = (case.labels == value) & (plain.labels != value)
            assert extra.any(), lv
            assert set(np.unique(plain.labels[extra]).tolist()) <= CANAL | {value}
            # posterior (larger column) than the plain disc's posterior margin on the same row and slice
            k, i, j = np.nonzero(extra)
            behind = 0
            disc = plain.labels == value
            for kk, ii, jj in zip(k, i, j):
                cols = np.flatnonzero(disc[kk, ii])
                if cols.size and jj > cols.max():
                    behind += 1
            assert behind >= 3, lv
            assert extra[lv["slice_index"]].any()
            # paracentral herniations sit on their side: slices go toward patient right
            ks = np.nonzero(extra.any(axis=(1, 2)))[0]
            mid = case.truth["midline_slice"]
            if lv["herniation_side"] == "left":
                assert ks.mean() < mid
            elif lv["herniation_side"] == "right":
                assert ks.mean() > mid


def test_scanner_ranges_over_seeds():
    prof = PROFILES["default"]
    for seed in range(40):
        anat = sample_anatomy(phantom_rng.stream(seed, "anatomy"), prof)
        acq = sample_acquisition(phantom_rng.stream(seed, "scanner"), prof, anat)
        assert 11 <= acq.n_slices <= 19
        assert 256 <= acq.grid.rows <= 512 and 256 <= acq.grid.cols <= 512
        assert 0.5 <= acq.grid.spacing <= 1.0
        assert 240 - 1e-6 <= acq.grid.rows * acq.grid.spacing <= 360 + 1e-6
        assert 3.0 <= acq.slice_thickness <= 5.0 and 3.0 <= acq.slice_spacing <= 5.0
        assert acq.slice_spacing >= acq.slice_thickness - 1e-9


def test_generated_geometry_in_range(pairs):
    for case, _ in pairs.values():
        n, rows, cols = case.image.shape
        sc, sr, ss = case.spacing
        assert 11 <= n <= 19 and 256 <= rows <= 512 and 256 <= cols <= 512
        assert sc == sr and 0.5 <= sc <= 1.0 and 3.0 <= ss <= 5.0
        assert case.direction == (0.0, 0.0, -1.0, 1.0, 0.0, 0.0, 0.0, -1.0, 0.0)
        assert 0 <= case.truth["midline_slice"] <= n - 1


def test_dicom_series_reads_back_like_mha(written):
    folder = written[0]
    image = sitk.ReadImage(str(folder / "image.mha"))
    labels = sitk.ReadImage(str(folder / "labels.mha"))
    reader = sitk.ImageSeriesReader()
    names = reader.GetGDCMSeriesFileNames(str(folder / "dicom"))
    reader.SetFileNames(names)
    series = reader.Execute()
    assert np.array_equal(sitk.GetArrayFromImage(series), sitk.GetArrayFromImage(image))
    for a, b in ((series, image), (labels, image)):
        assert np.allclose(a.GetSpacing(), b.GetSpacing(), atol=1e-4)
        assert np.allclose(a.GetOrigin(), b.GetOrigin(), atol=1e-3)
        assert np.allclose(a.GetDirection(), b.GetDirection(), atol=1e-6)
    case = generate_case(42)
    assert np.array_equal(sitk.GetArrayFromImage(image), case.image)
    assert np.allclose(image.GetOrigin(), case.origin) and np.allclose(image.GetSpacing(), case.spacing)
    truth = json.loads((folder / "truth.json").read_text())
    assert truth == json.loads(json.dumps(case.truth))
    assert len(list((folder / "png").glob("slice_*.png"))) == case.image.shape[0]


def test_dicom_attributes(written):
    import pydicom

    ds = pydicom.dcmread(written[0] / "dicom" / "IM0000.dcm")
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.4"
    assert ds.Modality == "MR" and ds.BodyPartExamined == "LSPINE"
    assert str(ds.PatientName) == "PHANTOM^phantom_42"
    assert ds.SeriesDescription == "SAG T2 TSE (synthetic phantom)"
    assert [float(v) for v in ds.ImageOrientationPatient] == [0, 1, 0, 0, 0, -1]
    assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation) == (16, 12, 11, 0)
    truth = json.loads((written[0] / "truth.json").read_text())
    assert ds.StudyInstanceUID == truth["study_instance_uid"]


def test_dciodvfy_no_errors(written):
    tool = shutil.which("dciodvfy")
    if tool is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("dciodvfy (Debian dicom3tools) is required in CI")
        pytest.skip("dciodvfy not installed")
    result = subprocess.run([tool, str(written[0] / "dicom" / "IM0001.dcm")], capture_output=True, text=True,
                            timeout=60)
    errors = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("Error")]
    assert errors == []


def test_shifted_profile():
    case = generate_case(3, profile="shifted", herniation_rate=1.0)
    assert case.truth["profile"] == "shifted"
    assert set(np.unique(case.labels).tolist()) <= DOCUMENTED
    assert any(lv["herniation"] for lv in case.truth["levels"])


def test_bad_arguments():
    with pytest.raises(ValueError):
        generate_case(1, profile="nope")
    with pytest.raises(ValueError):
        generate_case(1, herniation_rate=1.5)


def test_dataset_and_cli(tmp_path, capsys):
    from pipelines.phantom.cli import add_parser, run

    parser = argparse.ArgumentParser(prog="ldh")
    add_parser(parser.add_subparsers())
    args = parser.parse_args(["phantom", "--out", str(tmp_path / "ds"), "--count", "2", "--seed", "5",
                              "--formats", "png", "--herniation-rate", "0.5", "--profile", "shifted"])
    assert run(args) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and lines[-1].startswith("wrote 2 case(s)")
    dirs = sorted(p.name for p in (tmp_path / "ds").iterdir() if p.is_dir())
    assert dirs == ["case_0000", "case_0001"]
    assert not (tmp_path / "ds" / "case_0000" / "image.mha").exists()
    truth = json.loads((tmp_path / "ds" / "case_0001" / "truth.json").read_text())
    assert truth["seed"] == phantom_rng.derive_seed(5, 1) and truth["case_id"] == "case_0001"
    manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    assert [c["case_id"] for c in manifest["cases"]] == dirs
    with pytest.raises(SystemExit):
        parser.parse_args(["phantom", "--out", "x", "--count", "1", "--seed", "1", "--formats", "jpg"])
    again = generate_dataset(tmp_path / "again", 1, 5, formats=("png",), herniation_rate=0.5, profile="shifted")
    assert (again[0] / "truth.json").read_bytes() == (tmp_path / "ds" / "case_0000" / "truth.json").read_bytes()
