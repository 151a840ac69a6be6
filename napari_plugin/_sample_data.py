"""Sample images for File > Open Sample > segprompt: scikit-image's bundled images (no download)."""

from __future__ import annotations

from typing import Any

from skimage import data

LayerData = tuple[Any, dict[str, Any], str]


def astronaut() -> list[LayerData]:
    """``(512, 512, 3)`` uint8 RGB portrait: people, a flag, a helmet to click on."""
    return [(data.astronaut(), {"name": "astronaut", "rgb": True}, "image")]


def coins() -> list[LayerData]:
    """``(303, 384)`` uint8 grayscale coins: many similar objects, for accept / next id."""
    return [(data.coins(), {"name": "coins"}, "image")]


def coffee() -> list[LayerData]:
    """``(400, 600, 3)`` uint8 RGB coffee cup: a non-square image."""
    return [(data.coffee(), {"name": "coffee", "rgb": True}, "image")]
