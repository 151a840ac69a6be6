"""Kvasir-SEG colonoscopy polyps: ``images/*.jpg`` + ``masks/*.png`` 0/255, class ``polyp``."""

from __future__ import annotations

from .plain import PairedFolderLayout
from .registry import register_layout


@register_layout
class KvasirSeg(PairedFolderLayout):
    name = "kvasir_seg"
    domain = "medical"
    summary = "Kvasir-SEG polyps: binary 0/255 masks, class 'polyp'"
    folder_name = "kvasir_seg"
    class_names = ("polyp",)
