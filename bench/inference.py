"""Inference speed: a 15-slice 512x512 sagittal phantom, segmentation + classification, median of N runs.

Reports the engine (compiled fixed-signature graphs) and, in the same run, a plain ``model.predict`` baseline
through the same pre/post-processing, model load time, and peak RSS. Run: ``python -m bench.inference``.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np

from bench.common import summary, write_result


def bench_case():
    from pipelines.phantom import generate_case
    from pipelines.phantom.profile import DEFAULT

    profile = DEFAULT.with_(slices=(15, 15), matrix=(512, 512), rectangular_prob=0.0, fov_mm=(256.0, 360.0))
    return generate_case(4242, profile=profile)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()

    case = bench_case()  # the phantom generator imports neither the engine nor a model runtime

    t0 = time.perf_counter()  # load = importing the engine and its runtime + loading both models
    from ai_service.config import Settings
    from ai_service.engine import InferenceEngine
    from ai_service.volume import Volume

    engine = InferenceEngine(Settings())
    load_s = time.perf_counter() - t0
    volume = Volume(case.image.astype(np.float32), case.spacing, case.origin, case.direction, "mha")
    assert volume.shape == (15, 512, 512), volume.shape
    t0 = time.perf_counter()
    engine.analyze(volume)  # first call: session / graph warm-up
    first_s = time.perf_counter() - t0

    def timed(n):
        out, stages = [], []
        for _ in range(n):
            t = time.perf_counter()
            analysis = engine.analyze(volume)
            out.append(time.perf_counter() - t)
            stages.append(analysis.timings_ms)
        return out, {k: float(np.median([s[k] for s in stages])) for k in stages[0]}, analysis

    fast, stages, analysis = timed(args.runs)
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # the serving engine's footprint

    # in the same process, the same engine with other model runners: the compiled TensorFlow graphs (XLA), and
    # the plain model.predict baseline
    from ai_service.runtime import REFINER_SHAPE, compiled_graph, input_shape, load_keras

    seg_model, cls_model = load_keras(engine.seg_ref), load_keras(engine.cls_ref)
    refiner = engine.seg_ref.card.get("refiner")
    refiner_model = load_keras(engine.seg_ref, refiner["file"]) if refiner else None
    chosen = engine._seg, engine._cls, engine._refine
    engine._seg = compiled_graph(seg_model, input_shape(engine.seg_ref.name, engine.seg_ref.card))
    engine._cls = compiled_graph(cls_model, input_shape(engine.cls_ref.name, engine.cls_ref.card))
    engine._refine = compiled_graph(refiner_model, REFINER_SHAPE) if refiner_model else None
    engine.analyze(volume)
    xla, xla_stages, _ = timed(max(5, args.runs // 3))
    engine._seg = lambda x: seg_model.predict(x, verbose=0)
    engine._cls = lambda x: cls_model.predict(x, verbose=0)
    engine._refine = (lambda x: refiner_model.predict(x, verbose=0)) if refiner_model else None
    engine.analyze(volume)
    slow, slow_stages, _ = timed(max(5, args.runs // 3))
    engine._seg, engine._cls, engine._refine = chosen

    fast_s, xla_s, slow_s = summary(fast), summary(xla), summary(slow)
    result = {
        "input": {"shape": list(volume.shape), "spacing_mm": list(volume.spacing), "data": "synthetic phantom"},
        "models": {"segmentation": engine.seg_ref.version, "classification": engine.cls_ref.version},
        "runtimes": engine.runtimes,
        "engine": fast_s | {"stages_median_ms": stages},
        "engine_tensorflow_xla": xla_s | {"stages_median_ms": xla_stages},
        "baseline_model_predict": slow_s | {"stages_median_ms": slow_stages},
        "speedup_vs_predict": slow_s["median_ms"] / fast_s["median_ms"],
        "model_load_s": load_s,
        "first_call_s": first_s,
        "peak_rss_mb": peak_rss_mb,  # before the comparison runners are loaded
        "peak_rss_mb_with_comparisons": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "discs_found": [d.level for d in analysis.findings.discs],
        "targets": {"median_ms": 500, "peak_rss_mb": 1536},
    }
    path = write_result("inference", result)
    print(f"seg+cls 15x512x512: median {fast_s['median_ms']:.0f} ms ({'/'.join(engine.runtimes.values())}; "
          f"TensorFlow XLA {xla_s['median_ms']:.0f} ms; model.predict baseline {slow_s['median_ms']:.0f} ms, "
          f"x{result['speedup_vs_predict']:.2f}); load {load_s:.2f} s; peak RSS {peak_rss_mb:.0f} MB -> {path}")


if __name__ == "__main__":
    main()
