"""Skin lesions (ISIC 2017 / HAM10000): binary 0/255 masks; ``index.json`` records origin and resizing."""

from __future__ import annotations

from .plain import PairedFolderLayout
from .registry import register_layout


@register_layout
class SkinLesion(PairedFolderLayout):
    name = "skin_lesion_isic_ham"
    domain = "medical"
    summary = "ISIC/HAM10000 dermoscopy: binary 0/255 masks, class 'skin lesion'; index.json per file"
    folder_name = "skin_lesion_isic_ham"
    class_names = ("skin lesion",)
    index_file = "index.json"
    index_fields = {"source": "origin", "resized": "resized", "size": "original_size_wh"}
