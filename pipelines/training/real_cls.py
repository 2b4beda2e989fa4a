"""Real healthy discs as herniation-classifier negatives (``ldh train cls --real-negatives``).

Every disc of the shared real exams belongs to a healthy volunteer, so each is a negative. The crops are cut
exactly as serving cuts them: the production segmentation names the discs on the exam (as given and as
clinical-like thick-slice series) and ``ai_service.engine.disc_crops`` crops every slice the classifier reads.
Only :data:`CLS_TRAIN_EXAMS` are used; the other exams stay held out for ``bench/real.py``.
Caveat (said in the model card): no real *herniated* disc is available, so a classifier that learns "real image
texture → healthy" cannot be caught here; real sensitivity is unmeasured.
"""

from __future__ import annotations

import numpy as np

from ai_service import preprocess as P
from ai_service.volume import canonical_of
from pipelines.importers.real_spine import RealExam
from pipelines.training.data import ClsData
from pipelines.training.real_eval import variant_of

# the first nine VB2 exams (sorted by file name); the other eight VB2 and both IVD exams are held out
CLS_TRAIN_EXAMS = ("vb2-02", "vb2-04", "vb2-05", "vb2-06", "vb2-07", "vb2-08", "vb2-09", "vb2-10", "vb2-12")
NEGATIVE_VARIANTS = ("given", "4mm", "3.5mm")


def real_negatives(engine, exams: list[RealExam], variants=NEGATIVE_VARIANTS) -> ClsData:
    """Classifier crops (label 0) of every disc the engine names on ``exams`` shown as ``variants``."""
    from ai_service.engine import disc_crops  # the engine imports the model runtimes: only when used

    xs, discs = [], []
    for exam in exams:
        for variant in variants:
            volume = variant_of(exam, variant)
            canon = canonical_of(volume)
            norm = P.normalize_volume(canon.forward(volume.array))
            named = engine.locate(norm, canon.spacing).discs
            crops, owners = disc_crops(norm, named, canon.spacing)
            xs.append(crops)
            discs += [f"{exam.name}/{variant}:{named[i].level}" for i, _ in owners]
    x = np.concatenate(xs).astype(np.float16) if xs else np.zeros((0, P.CROP_SIZE, P.CROP_SIZE, 2), np.float16)
    zeros = np.zeros(len(x), np.float32)
    return ClsData(x, zeros, np.asarray(discs), zeros.copy())


def combined(phantoms: ClsData, real: ClsData, repeat: int) -> ClsData:
    """Phantom samples plus the real negatives repeated ``repeat`` times (there are ~20x fewer of them)."""
    reals = [real] * repeat
    return ClsData(np.concatenate([phantoms.x] + [r.x for r in reals]),
                   np.concatenate([phantoms.y] + [r.y for r in reals]),
                   np.concatenate([phantoms.disc] + [r.disc for r in reals]),
                   np.concatenate([phantoms.disc_y] + [r.disc_y for r in reals]))
