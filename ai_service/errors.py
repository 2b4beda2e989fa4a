"""Errors a user can act on. Each carries one clear sentence; the CLI prints it and exits with code 2."""


class InputError(ValueError):
    """The input cannot be analysed (unreadable, wrong kind of series, inconsistent geometry...)."""


class ModelError(RuntimeError):
    """A model version is missing, unreadable or does not match what the engine expects."""
