"""Step 2: the dataset version: disc crops + ``labels.csv`` from the records in force, de-identified, split by patient.

Crops are made exactly as at serving time: the stored source series goes through the engine's loader,
canonical orientation and normalisation, and the disc mask is the one the *serving* segmentation produced for
that study (the result's ``discs.mha``), cut with :func:`ai_service.preprocess.disc_crop` — the function the
classifier sees in production. The reviewer decides the label: a herniated disc gives one positive crop, on the
slice the reviewer put the box (where the herniation was seen); a disc without herniation gives a negative crop
for every slice the classifier reads. A herniated disc's other slices are exported too, labelled ``-1``
(:data:`SCORED_ONLY`): not training targets (the herniation may not show there), but evaluation needs them to score
every disc as serving does, by the maximum over its slices. Scoring herniated discs on one slice and healthy ones
on all of theirs made the hold-out AUC depend on the label itself: production's serving AUC of 0.84 on a clean
(synthetic) hold-out read 0.66, and flipped labels pushed it below chance. Boxes the AI never segmented (added
boxes with no mask under them) are counted, not guessed.

Layout (immutable: the version folder is refused if it exists; ``manifest.json`` is written last)::

    datasets/<version>/crops/<patient>-<level>-s<slice>.npy    float16 (64, 64, 2): image, disc mask
    datasets/<version>/labels.csv    file,label,level,slice,split,patient,disc_label   (label 1, 0 or -1)
    datasets/<version>/manifest.json record ids, new record ids, counts, previous version, code version
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ai_service import preprocess as P
from ai_service.config import Settings
from ai_service.findings import ModelVersions
from ai_service.storage import Storage, safe_name
from ai_service.volume import canonical_of
from pipelines.retrain.collect import DATASETS, Collection
from pipelines.retrain.deid import DeidError, identifiers_of, patient_key, scan_for_identifiers, split_of
from pipelines.retrain.lineage import code_version
from pipelines.training.data import ClsData

SPLITS = ("train", "val", "test")
SCORED_ONLY = -1  # crop label: a herniated disc's slice other than the reviewer's; scored in evaluation, not learned
LABEL_COLUMNS = ("file", "label", "level", "slice", "split", "patient", "disc_label")


@dataclass
class DatasetInfo:
    version: str
    counts: dict[str, dict[str, int]]  # split -> {crops, discs, positive_discs, patients}
    skipped: dict[str, int]


def new_dataset_version() -> str:
    return time.strftime("ds-%Y%m%d-%H%M%S", time.gmtime())


def _series_prefix(storage: Storage, record: dict) -> str | None:
    study, series = safe_name(record["study_instance_uid"]), safe_name(record["series_instance_uid"])
    for prefix in (f"studies/{study}/{series}", f"inbox/{study}/{series}"):
        if any(k.endswith(".dcm") for k in storage.list(prefix)):
            return prefix
    return None


def _result_labels(storage: Storage, record: dict, workdir: Path) -> np.ndarray | None:
    import SimpleITK as sitk

    versions = ModelVersions(record["model"]["segmentation"], record["model"]["classification"])
    from ai_service.results import result_prefix

    key = f"{result_prefix(record['study_instance_uid'], record['series_instance_uid'], versions)}/discs.mha"
    if not storage.exists(key):
        return None
    path = workdir / "discs.mha"
    path.write_bytes(storage.read_bytes(key))
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def _canonical_slice(canon, shape, index: int) -> int:
    marker = np.zeros(shape, bool)
    marker[index] = True
    return int(np.argmax(canon.forward(marker).any(axis=(1, 2))))


def record_crops(storage: Storage, record: dict, settings: Settings, workdir: Path):
    """(identifiers, [(level, canonical slice, crop, label, disc_label)], skipped reasons) of one record."""
    from ai_service.results import load_stored_series

    prefix = _series_prefix(storage, record)
    if prefix is None:
        return None, [], ["source series not stored"]
    volume = load_stored_series(storage, prefix, workdir / "series", settings)
    first = next(p for p in sorted((workdir / "series").rglob("*.dcm")))
    idents = identifiers_of(first)
    idents.setdefault("StudyInstanceUID", record["study_instance_uid"])
    labels = _result_labels(storage, record, workdir)
    if labels is None or labels.shape != volume.array.shape:
        return idents, [], ["AI result (discs.mha) of the reviewed model version not stored"]
    canon = canonical_of(volume)
    norm = P.normalize_volume(canon.forward(volume.array))
    _, row_mm, col_mm = canon.spacing
    out, skipped = [], []
    for disc in record["discs"]:
        x0, y0, x1, y1 = disc["box"]
        window = labels[disc["slice_index"], y0:y1, x0:x1]
        values, counts = np.unique(window[window > 0], return_counts=True)
        if not len(values):
            skipped.append("box without a segmented disc under it")
            continue
        mask = canon.forward(labels == values[np.argmax(counts)])
        read = [int(s) for s in P.classified_slices(mask)]
        centre, axis = P.disc_pose(mask, row_mm, col_mm, read)
        if disc["herniation"]:
            seen = _canonical_slice(canon, labels.shape, disc["slice_index"])
            targets = [(seen, 1)] + [(s, SCORED_ONLY) for s in read if s != seen]
        else:
            targets = [(s, 0) for s in read]
        for s, label in targets:
            crop = P.disc_crop(norm[s], mask[s], centre, axis, row_mm, col_mm).astype(np.float16)
            out.append((disc["level"], s, crop, label, int(disc["herniation"])))
    return idents, out, skipped


def build_dataset(storage: Storage, collection: Collection, settings: Settings, key: bytes, *,
                  holdout: float, val: float, version: str | None = None, progress=None) -> DatasetInfo:
    """Write one immutable dataset version from every record in force; refuses to export an identifier."""
    version = version or new_dataset_version()
    base = f"{DATASETS}/{version}"
    if storage.list(base):
        raise FileExistsError(f"dataset version {version} already exists; dataset versions are immutable")
    rows, identifiers, skipped = [], set(), {}
    counts = {s: {"crops": 0, "discs": 0, "positive_discs": 0, "patients": 0} for s in SPLITS}
    patients = {s: set() for s in SPLITS}
    with tempfile.TemporaryDirectory(prefix="ldh-dataset-") as tmp:
        out = Path(tmp) / "out"
        (out / "crops").mkdir(parents=True)
        for i, record in enumerate(collection.records):
            work = Path(tmp) / f"r{i}"
            work.mkdir()
            idents, crops, reasons = record_crops(storage, record, settings, work)
            for reason in reasons:
                skipped[reason] = skipped.get(reason, 0) + 1
            if idents is None:
                continue
            identifiers.update(idents.values())
            patient = patient_key(key, idents.get("PatientID") or record["study_instance_uid"])
            split = split_of(patient, holdout, val)
            patients[split].add(patient)
            discs = set()
            for level, s, crop, label, disc_label in crops:
                name = f"{patient}-{level}-s{s:03d}.npy"
                np.save(out / "crops" / name, crop)
                rows.append((f"crops/{name}", label, level, s, split, patient, disc_label))
                counts[split]["crops"] += 1
                if level not in discs:
                    discs.add(level)
                    counts[split]["discs"] += 1
                    counts[split]["positive_discs"] += disc_label
            if progress:
                progress(i + 1, len(collection.records))
        for s in SPLITS:
            counts[s]["patients"] = len(patients[s])
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(LABEL_COLUMNS)
        writer.writerows(rows)
        (out / "labels.csv").write_text(text.getvalue())
        manifest = {
            "version": version, "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "previous_version": collection.previous_version,
            "record_ids": [r["record_id"] for r in collection.records], "new_record_ids": collection.new_ids,
            "counts": counts, "skipped": skipped, "crop": {"size": P.CROP_SIZE, "channels": ["image", "disc mask"],
                                                          "dtype": "float16", "function": "ai_service.preprocess.disc_crop"},
            "split": "by keyed hash of the pseudonymous patient key", "code_version": code_version(),
            "deidentification": "pixel arrays only, no DICOM header; patient = HMAC-SHA256 key; scanned for "
                                "PS3.15 basic-profile identifiers before writing",
        }
        (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        hits = scan_for_identifiers(out, identifiers)
        if hits:
            raise DeidError(f"dataset {version} would contain identifiers ({len(hits)} hits, e.g. {hits[0]}); "
                            "nothing was written")
        for path in sorted(out.rglob("*")):
            if path.is_file() and path.name != "manifest.json":
                storage.write_file(f"{base}/{path.relative_to(out).as_posix()}", path)
        storage.write_file(f"{base}/manifest.json", out / "manifest.json")  # the commit marker
    return DatasetInfo(version, counts, skipped)


def load_split(storage: Storage, version: str, split: str, *, for_evaluation: bool = False
               ) -> tuple[ClsData, list[str]]:
    """One split as classifier samples (disc ids ``patient:level``) and each crop's level.

    Training targets only, unless ``for_evaluation``: then also the :data:`SCORED_ONLY` crops (for evaluation).
    """
    rows = [r for r in csv.DictReader(io.StringIO(storage.read_bytes(f"{DATASETS}/{version}/labels.csv").decode()))
            if r["split"] == split and (for_evaluation or int(r["label"]) != SCORED_ONLY)]
    x = np.stack([np.load(io.BytesIO(storage.read_bytes(f"{DATASETS}/{version}/{r['file']}"))) for r in rows]) \
        if rows else np.zeros((0, P.CROP_SIZE, P.CROP_SIZE, 2), np.float16)
    data = ClsData(x, np.asarray([float(r["label"]) for r in rows], np.float32),
                   np.asarray([f"{r['patient']}:{r['level']}" for r in rows]),
                   np.asarray([float(r["disc_label"]) for r in rows], np.float32))
    return data, [r["level"] for r in rows]


def concat(*parts: ClsData) -> ClsData:
    parts = [p for p in parts if len(p.y)] or parts[:1]
    return ClsData(np.concatenate([p.x for p in parts]), np.concatenate([p.y for p in parts]),
                   np.concatenate([p.disc for p in parts]), np.concatenate([p.disc_y for p in parts]))

