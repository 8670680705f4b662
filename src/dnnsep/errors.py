"""Errors that carry a one-line, user-facing message.

Command-line tools catch :class:`DnnsepError` and print ``error: <message>`` instead of a
traceback, so every message names the file or option at fault and says what is wrong.
"""


class DnnsepError(Exception):
    """Base class for errors whose message is meant for the user, on one line."""


class CheckpointError(DnnsepError, ValueError):
    """A checkpoint is missing, unreadable, of another model, or does not match its config."""


class AudioError(DnnsepError, ValueError):
    """An audio file is unreadable, empty, too short, or of an unsupported format."""
