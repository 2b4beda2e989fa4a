"""The retraining pipeline: feedback → de-identified dataset → Keras Tuner training → evaluation → gated promotion.

Each step is a plain function in its own module (testable without KFP); :mod:`pipelines.retrain.pipeline` wraps
them as KFP v2 components that run locally (kfp's SubprocessRunner) or on Vertex AI Pipelines.
"""
