"""Tiny random-initialised transformers models, saved as local model folders.

Tests (and the backend benchmark) must never download weights. The builders
here save a real model class with a tiny configuration, random weights and its
real processor into a folder laid out like a hub snapshot, so the backends load
them through the same code path (:mod:`segprompt.hub`) as a real checkpoint.
Their outputs are meaningless; shapes, dtypes, coordinate frames and the
pre/post-processing are real.

Every builder takes the folder to write to and a ``seed`` and returns that
folder. Text models get OpenAI CLIP's real vocabulary
(:func:`segprompt.text_tokenizer.clip_tokenizer`), so token ids are real too.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .text_tokenizer import clip_tokenizer

#: ImageNet statistics, the normalisation of CLIPSeg's and SegGPT's processors.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: The tiny CLIPSeg's vision tower sees 64 x 64 (4 x 4 patches of 16) but its
#: processor resizes to 96 x 96, as the real model sees 224 but is fed 352.
TINY_CLIPSEG_PROCESSOR_SIDE = 96


def _save(model: torch.nn.Module, processor, directory: str | Path) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(directory))
    processor.save_pretrained(str(directory))
    return directory


def tiny_clipseg_config():
    """A ``CLIPSegConfig`` with the real vocabulary and 2-layer, width-32 towers (about 1.7 M parameters)."""
    from transformers import CLIPSegConfig

    return CLIPSegConfig(
        text_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2},
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": 64,
            "patch_size": 16,
        },
        projection_dim=16,
        extract_layers=(0, 1),
        reduce_dim=16,
        decoder_num_attention_heads=2,
        decoder_intermediate_size=32,
        use_complex_transposed_convolution=True,
    )


def clipseg_processor(side: int):
    """CLIPSeg's processor (ViT image processor: resize to ``side`` x ``side``, ImageNet normalisation) + CLIP tokenizer."""
    from transformers import CLIPSegProcessor, ViTImageProcessor

    image_processor = ViTImageProcessor(
        size={"height": side, "width": side}, image_mean=list(IMAGENET_MEAN), image_std=list(IMAGENET_STD)
    )
    return CLIPSegProcessor(image_processor=image_processor, tokenizer=clip_tokenizer())


def tiny_clipseg_dir(directory: str | Path, seed: int = 0) -> Path:
    """Save a tiny random ``CLIPSegForImageSegmentation`` and its processor into ``directory``."""
    from transformers import CLIPSegForImageSegmentation

    torch.manual_seed(seed)
    model = CLIPSegForImageSegmentation(tiny_clipseg_config()).eval()
    return _save(model, clipseg_processor(TINY_CLIPSEG_PROCESSOR_SIDE), directory)
