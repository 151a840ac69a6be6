"""BUSI breast ultrasound: binary 0/255 lesion masks; ``index.csv`` gives the diagnosis.

Normal cases (diagnosis ``normal``) have empty masks, hence no object. The
diagnosis (``benign``/``malignant``/``normal``) is ``Sample.meta["diagnosis"]``.
"""

from __future__ import annotations

from .plain import PairedFolderLayout
from .registry import register_layout


@register_layout
class Busi(PairedFolderLayout):
    name = "busi"
    domain = "medical"
    summary = "BUSI breast ultrasound: binary lesion masks (normal cases empty); diagnosis in index.csv"
    folder_name = "busi"
    class_names = ("breast lesion",)
    index_file = "index.csv"
    index_fields = {"class": "diagnosis"}
