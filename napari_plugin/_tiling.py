"""The "tiles" row of the annotator and volume widgets: tile size and halo of a large image's embedding.

A tile size of 0 embeds the image whole (resized into the model's input); any
other value wraps the backend in a :class:`~segprompt.backends.tiled.TiledSegmenter`
through the backend options ``tile_shape`` / ``halo``
(:func:`segprompt.backends.create_from_options`), so the options a session
saves rebuild the same tiling on replay.
"""

from __future__ import annotations

from typing import Any

from qtpy.QtWidgets import QHBoxLayout, QLabel, QSpinBox, QWidget

from segprompt.backends.tiled import DEFAULT_HALO
from segprompt.tiling import MIN_TILE_SIDE


class TilingFields(QWidget):
    """Two spin boxes: tile side (px, 0 = no tiles) and halo (px)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.tile_spin = QSpinBox()
        self.tile_spin.setRange(0, 16384)
        self.tile_spin.setSingleStep(256)
        self.tile_spin.setSpecialValueText("off")
        self.tile_spin.setSuffix(" px")
        self.tile_spin.setToolTip(
            "embed a large image in tiles of at most this size with a halo, at full resolution instead of resized "
            f"whole; prompts go to the tiles they touch (off: no tiles; at least {MIN_TILE_SIDE} px)"
        )
        self.halo_spin = QSpinBox()
        self.halo_spin.setRange(0, 4096)
        self.halo_spin.setSingleStep(32)
        self.halo_spin.setValue(DEFAULT_HALO)
        self.halo_spin.setSuffix(" px")
        self.halo_spin.setToolTip("context added around each tile; objects up to this size lie wholly inside one tile")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.tile_spin)
        layout.addWidget(QLabel("halo"))
        layout.addWidget(self.halo_spin)
        self.tile_spin.valueChanged.connect(lambda value: self.halo_spin.setEnabled(value > 0))
        self.halo_spin.setEnabled(False)

    def options(self) -> dict[str, Any]:
        """``{"tile_shape": side, "halo": halo}``, or ``{}`` when tiling is off."""
        side = self.tile_spin.value()
        return {"tile_shape": side, "halo": self.halo_spin.value()} if side else {}


__all__ = ["TilingFields"]
