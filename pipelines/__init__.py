"""LDH Assist pipelines: synthetic phantoms, datasets, training, evaluation and the retraining pipeline."""
