"""LDH Assist AI service: volume loading, models, inference, findings and their encoders."""

__version__ = "0.1.0"
