"""Train the herniation classifier: Keras Tuner search on per-slice crops, disc-level threshold choice."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipelines.training.data import ClsData

TARGET_SENSITIVITY = 0.95  # operating point: highest threshold that keeps this disc-level sensitivity on validation


def disc_scores(p_slice: np.ndarray, data: ClsData) -> tuple[np.ndarray, np.ndarray]:
    """Disc-level P(herniation) = max over the disc's slices, and the disc-level truth."""
    ids, inverse = np.unique(data.disc, return_inverse=True)
    scores = np.zeros(len(ids))
    np.maximum.at(scores, inverse, p_slice)
    truth = np.zeros(len(ids))
    truth[inverse] = data.disc_y
    return scores, truth


def auc(scores: np.ndarray, truth: np.ndarray) -> float:
    """ROC AUC via the rank statistic (ties counted half)."""
    pos, neg = scores[truth > 0.5], scores[truth <= 0.5]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    ranks = np.empty(len(order))
    allv = np.concatenate([pos, neg])[order]
    r = np.arange(1, len(order) + 1, dtype=float)
    # average ranks over ties
    uniq, start = np.unique(allv, return_index=True)
    for k, s in enumerate(start):
        e = start[k + 1] if k + 1 < len(start) else len(allv)
        r[s:e] = r[s:e].mean()
    ranks[order] = r
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def operating_threshold(scores: np.ndarray, truth: np.ndarray, sensitivity: float = TARGET_SENSITIVITY) -> float:
    pos = np.sort(scores[truth > 0.5])
    if len(pos) == 0:
        return 0.5
    k = int(np.floor((1.0 - sensitivity) * len(pos)))
    return float(np.clip(pos[k] - 1e-6, 1e-4, 0.9999))


def sens_spec(scores, truth, threshold) -> tuple[float, float]:
    pred = scores >= threshold
    pos, neg = truth > 0.5, truth <= 0.5
    return float(pred[pos].mean()) if pos.any() else float("nan"), float((~pred[neg]).mean()) if neg.any() else float("nan")


def _fit(model, data: ClsData, val: ClsData, epochs: int, batch: int, seed: int, verbose: int):
    import keras

    pos = max(1.0, float(data.y.sum()))
    weight = {0: 1.0, 1: float(np.clip((len(data.y) - pos) / pos, 1.0, 10.0))}
    return model.fit(data.x.astype(np.float32), data.y, validation_data=(val.x.astype(np.float32), val.y),
                     epochs=epochs, batch_size=batch, class_weight=weight, verbose=verbose,
                     callbacks=[keras.callbacks.EarlyStopping(monitor="val_auc", mode="max", patience=3,
                                                              restore_best_weights=True)])


def train_cls(data: ClsData, val: ClsData, *, epochs: int, batch: int, trials: int, seed: int, workdir: Path,
              verbose: int = 1, init=None):
    """Random search over the CNN's width/depth/dropout/learning rate (``trials``), then refit the best.

    With ``init`` (a Keras classifier: warm start, e.g. production) every trial starts from its weights and only
    the learning rate is searched (fine-tuning keeps the architecture).
    """
    import keras
    import keras_tuner as kt

    from ai_service.networks import build_classifier

    def build(hp):
        if init is not None:
            model = type(init).from_config(init.get_config())
            model.set_weights(init.get_weights())
            lr = hp.Float("lr", 5e-5, 1e-3, sampling="log")
        else:
            model = build_classifier(
                filters=hp.Choice("filters", [8, 12, 16]),
                blocks=hp.Int("blocks", 2, 3),
                dense=hp.Choice("dense", [32, 64]),
                dropout=hp.Float("dropout", 0.1, 0.5, step=0.1),
            )
            lr = hp.Float("lr", 3e-4, 3e-3, sampling="log")
        model.compile(optimizer=keras.optimizers.Adam(lr),
                      loss="binary_crossentropy", metrics=[keras.metrics.AUC(name="auc")])
        return model

    keras.utils.set_random_seed(seed)
    tuner = kt.RandomSearch(build, objective=kt.Objective("val_auc", "max"), max_trials=trials, seed=seed,
                            directory=str(workdir), project_name="herniation_cls", overwrite=True)
    tuner.search(data.x.astype(np.float32), data.y, validation_data=(val.x.astype(np.float32), val.y),
                 epochs=max(2, epochs // 4), batch_size=batch, verbose=verbose)
    best = tuner.get_best_hyperparameters(1)[0]
    keras.utils.set_random_seed(seed)
    model = build(best)
    history = _fit(model, data, val, epochs, batch, seed, verbose)
    p_val = model.predict(val.x.astype(np.float32), verbose=0)[:, 0]
    scores, truth = disc_scores(p_val, val)
    threshold = operating_threshold(scores, truth)
    sens, spec = sens_spec(scores, truth, threshold)
    metrics = {"val_disc_auc": auc(scores, truth), "val_sensitivity": sens, "val_specificity": spec,
               "val_discs": int(len(scores)), "val_herniated_discs": int(truth.sum())}
    return model, dict(best.values), threshold, metrics, {k: [float(v) for v in vals] for k, vals in history.history.items()}
