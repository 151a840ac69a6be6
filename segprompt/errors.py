"""Exceptions raised for user mistakes.

Every error a user can cause (a bad prompt, an unreadable file, a missing
checkpoint, a prompt kind a backend cannot answer) derives from
:class:`SegpromptError`, so the CLI and the napari plugin can show its message
instead of a traceback.
"""

from __future__ import annotations


class SegpromptError(Exception):
    """Base class of every error caused by user input or the environment."""


class PromptError(SegpromptError, ValueError):
    """A prompt is malformed or does not fit the image it is applied to."""


class ImageError(SegpromptError, OSError):
    """An image or mask file cannot be read, or an array cannot be used as an image."""


class UnsupportedPromptError(SegpromptError, ValueError):
    """A backend was given a prompt kind it does not accept."""


class CheckpointError(SegpromptError, RuntimeError):
    """A model checkpoint is missing, cannot be downloaded, or fails verification."""


class DatasetError(SegpromptError, ValueError):
    """A dataset folder has an unknown layout or a file in it is bad."""
