"""The exceptions kdbench reports to a user as one line (exit code 2)."""

from __future__ import annotations


class KdbenchError(Exception):
    """A problem the user can fix; ``str(error)`` says what and how."""


class SpecError(KdbenchError):
    """A benchmark file, or a value in it, is wrong."""


class PluginError(KdbenchError):
    """A plugin failed to load or registered something invalid."""


class Incompatible(KdbenchError):
    """A method cannot work on this pair of models; raised at planning time."""


class TrackingError(KdbenchError):
    """The tracking store cannot be reached or written."""


class Diverged(KdbenchError):
    """A training run produced a non-finite loss."""
