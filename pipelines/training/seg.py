"""Train the 2.5D disc/vertebra/sacrum U-Net on freshly generated phantoms."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ai_service.preprocess import SEG_CLASSES


DICE_WEIGHTS = (0.0, 2.0, 1.0, 1.0)  # background, disc, vertebra, sacrum: the thin discs are what we report


def dice_loss(y_true, y_pred):
    """Weighted soft Dice over the foreground classes: keeps thin discs from drowning in background.

    A pixel whose soft target sums to zero is unknown (partial labels: ``real_seg``): its prediction is left out
    too, so it counts neither as a hit nor as a false positive. (Cross-entropy leaves it out by itself.)
    """
    import tensorflow as tf

    known = tf.minimum(tf.reduce_sum(y_true, axis=-1, keepdims=True), 1.0)
    y_pred = y_pred * known
    axes = (0, 1, 2)
    inter = tf.reduce_sum(y_true * y_pred, axis=axes)
    denom = tf.reduce_sum(y_true + y_pred, axis=axes)
    dice = (2.0 * inter + 1.0) / (denom + 1.0)
    return 1.0 - tf.reduce_sum(dice * DICE_WEIGHTS) / sum(DICE_WEIGHTS)


def seg_loss(y_true, y_pred):
    import keras

    return keras.losses.categorical_crossentropy(y_true, y_pred) + dice_loss(y_true, y_pred)


TRAIN_WINDOW = 128  # default: random 128² windows of the canvas (4x cheaper than 256²); serving sees the whole canvas


def _dataset(x: np.ndarray, y: np.ndarray, batch: int, train: bool, seed: int, window: int = TRAIN_WINDOW,
             zoom: tuple[float, float] = (1.0, 1.0)):
    """``window`` = side of the random training crops; the canvas side (or more) trains on whole canvases, which
    is slower but lets batch-norm statistics and context match serving. ``zoom`` = range of a random scale per
    crop: a window of ``window``·z canvas pixels is resized to ``window``, so the network sees the anatomy from
    1/z_max to 1/z_min times its canvas size (fields of view and spines the phantoms' fill-the-canvas scale does
    not cover). Resized soft targets are renormalised; a pixel less than half known stays unknown."""
    import tensorflow as tf

    k = len(SEG_CLASSES)
    ds = tf.data.Dataset.from_tensor_slices((x, y))

    def to_float(a, b):  # both uint8 0…255: image channels and soft class targets (preprocess.seg_targets)
        return tf.cast(a, tf.float32) / 255.0, tf.cast(b, tf.float32) / 255.0

    if train:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)

        if zoom != (1.0, 1.0):
            side = int(x.shape[1])

            def zoomed(a, b):  # uint8 in, float out: resized soft targets need renormalising
                z = tf.random.uniform((), zoom[0], zoom[1], seed=seed)
                cut = tf.clip_by_value(tf.cast(tf.round(window * z), tf.int32), 16, side)
                both = tf.image.random_crop(tf.concat([a, b], axis=-1), tf.stack([cut, cut, 3 + k]), seed=seed)
                image, target = to_float(both[..., :3], both[..., 3:])
                both = tf.image.resize(tf.concat([image, target], axis=-1), (window, window),
                                       method="area" if zoom[1] > 1.0 else "bilinear", antialias=True)
                both = tf.ensure_shape(both, (window, window, 3 + k))
                image, target = both[..., :3], both[..., 3:]
                known = tf.reduce_sum(target, axis=-1, keepdims=True)
                return image, tf.where(known > 0.5, target / tf.maximum(known, 1e-6), 0.0)

            return ds.map(zoomed, num_parallel_calls=2).batch(batch).prefetch(2)

        if window < x.shape[1]:
            def crop(a, b):
                both = tf.concat([a, b], axis=-1)
                both = tf.image.random_crop(both, (window, window, 3 + k), seed=seed)
                return both[..., :3], both[..., 3:]

            ds = ds.map(crop, num_parallel_calls=2)
    ds = ds.map(to_float, num_parallel_calls=2)
    return ds.batch(batch).prefetch(2)


def mask_dice(truth: np.ndarray, pred: np.ndarray) -> float:
    """Dice of two boolean masks (1 when both are empty)."""
    return float(2 * (truth & pred).sum() / max(1, truth.sum() + pred.sum()))


def cosine_rate(lr: float, epochs: int, samples: int, batch: int):
    """Learning rate decayed from ``lr`` to 1 % of it over all the steps of ``epochs`` (cosine)."""
    import keras

    return keras.optimizers.schedules.CosineDecay(lr, decay_steps=epochs * -(-samples // batch), alpha=0.01)


def disc_dice(model, x: np.ndarray, y: np.ndarray, batch: int = 16) -> dict[str, float]:
    """Per-class Dice on canvas samples against the arg-max of the soft targets (a quick validation figure;
    `ldh evaluate` measures on input grids)."""
    pred = np.concatenate([np.argmax(model.predict(x[i : i + batch] / 255.0, verbose=0), -1)
                           for i in range(0, len(x), batch)])
    truth = np.argmax(y, axis=-1)
    out = {}
    for c, name in enumerate(SEG_CLASSES[1:], start=1):
        out[f"dice_{name}"] = mask_dice(truth == c, pred == c)
    return out


def train_seg(x, y, xv, yv, *, epochs: int, batch: int, base_filters: int, lr: float, seed: int, verbose: int = 1,
              init=None, window: int = TRAIN_WINDOW, zoom: tuple[float, float] = (1.0, 1.0), schedule: str = "plateau",
              checkpoints=None):
    """Fit the U-Net; ``init`` = a model to continue from (warm start) instead of fresh weights.

    ``schedule``: "plateau" halves the rate when the validation loss stalls and stops early (short fine-tunes);
    "cosine" decays it from ``lr`` to 1 % over all ``epochs`` and runs them all (long runs: the validation loss of
    this batch-Dice objective is too noisy to steer by). ``checkpoints`` = a folder for each epoch's weights.
    ``zoom``: the random crop scale range (see ``_dataset``).
    """
    import keras

    from ai_service.networks import build_unet

    keras.utils.set_random_seed(seed)
    model = build_unet(base_filters=base_filters)
    if init is not None:
        model.set_weights(init.get_weights())
    if schedule == "cosine":
        rate = cosine_rate(lr, epochs, len(x), batch)
        callbacks = []
    else:
        rate = lr
        callbacks = [
            keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=2, min_lr=1e-5),
            keras.callbacks.EarlyStopping(monitor="val_loss", patience=4, restore_best_weights=True),
        ]
    if checkpoints is not None:
        Path(checkpoints).mkdir(parents=True, exist_ok=True)
        callbacks.append(keras.callbacks.ModelCheckpoint(str(Path(checkpoints) / "epoch-{epoch:03d}.keras")))
    model.compile(optimizer=keras.optimizers.Adam(rate), loss=seg_loss, jit_compile=True)
    history = model.fit(_dataset(x, y, batch, True, seed, window, zoom), validation_data=_dataset(xv, yv, batch, False, seed),
                        epochs=epochs, callbacks=callbacks, verbose=verbose)
    return model, {k: [float(v) for v in vals] for k, vals in history.history.items()}
