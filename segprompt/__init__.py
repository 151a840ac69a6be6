"""segprompt: an interactive segmentation prompting workbench."""

from .errors import CheckpointError, DatasetError, ImageError, PromptError, SegpromptError, UnsupportedPromptError
from .prompts import Box, Exemplars, MaskPrompt, Points, Prompt, Text, VisualReference

__version__ = "0.1.0"

__all__ = [
    "Box",
    "CheckpointError",
    "DatasetError",
    "Exemplars",
    "ImageError",
    "MaskPrompt",
    "Points",
    "Prompt",
    "PromptError",
    "SegpromptError",
    "Text",
    "UnsupportedPromptError",
    "VisualReference",
]
