"""ISBI 2012 EM membranes: 255 = cell interior, 0 = membrane; cells become instances.

Each cell is a 4-connected component of the white region (4-connectivity, so
that two cells touching only diagonally through a one-pixel membrane gap stay
apart). The mask is an instance label map; the membrane is background.
"""

from __future__ import annotations

import numpy as np
from skimage.measure import label

from .base import Sample
from .files import binary_mask, load_image, load_mask
from .lazy import Entry
from .plain import PairedFolderLayout, meta_of, source_of
from .registry import register_layout


@register_layout
class EmMembranes(PairedFolderLayout):
    name = "isbi2012_em_membranes"
    domain = "microscopy"
    summary = "ISBI 2012 EM: white cell regions split into instances by 4-connected components"
    folder_name = "isbi2012_em_membranes"
    class_names = ("cell",)

    def read(self, entry: Entry) -> Sample:
        image = load_image(entry.path)
        mask_path = entry.info["mask"]
        cells = binary_mask(load_mask(mask_path, image.shape), mask_path)
        instances = label(cells, connectivity=1).astype(np.int32)
        return Sample(entry.id, image, instances, "instance", self.class_names, source=source_of(entry), meta=meta_of(entry))
