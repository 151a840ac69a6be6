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


def tiny_owlv2_dir(directory: str | Path, seed: int = 0) -> Path:
    """Save a tiny random ``Owlv2ForObjectDetection`` (64 x 64 input, 4 x 4 patches) and its processor."""
    from transformers import Owlv2Config, Owlv2ForObjectDetection, Owlv2ImageProcessor, Owlv2Processor

    # The class head compares image class embeddings (text width) with projected
    # text queries, so the text width must equal projection_dim, as in the real model.
    config = Owlv2Config(
        text_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2},
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": 64,
            "patch_size": 16,
        },
        projection_dim=32,
    )
    torch.manual_seed(seed)
    model = Owlv2ForObjectDetection(config).eval()
    processor = Owlv2Processor(
        image_processor=Owlv2ImageProcessor(size={"height": 64, "width": 64}),
        tokenizer=clip_tokenizer(model_max_length=config.text_config.max_position_embeddings),
    )
    return _save(model, processor, directory)


#: Words of the tiny BERT vocabulary (Grounding DINO's text tower); anything else is ``[UNK]``.
TINY_BERT_WORDS = ("a", "an", "the", "of", "cat", "dog", "polyp", "cell", "lesion", "photo", "object", "person")


def tiny_bert_tokenizer():
    """A lower-casing ``BertTokenizer`` over ``[PAD] [UNK] [CLS] [SEP] [MASK] . ,`` + :data:`TINY_BERT_WORDS`."""
    from transformers import BertTokenizer

    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ","] + list(TINY_BERT_WORDS)
    return BertTokenizer(vocab={token: index for index, token in enumerate(tokens)}, do_lower_case=True)


def tiny_grounding_dino_dir(directory: str | Path, seed: int = 0) -> Path:
    """Save a tiny random ``GroundingDinoForObjectDetection`` (Swin backbone of width 16) and its processor.

    The processor resizes the shortest side to 64 (longest at most 96).
    """
    from transformers import GroundingDinoConfig, GroundingDinoForObjectDetection, GroundingDinoImageProcessor
    from transformers import GroundingDinoProcessor

    tokenizer = tiny_bert_tokenizer()
    config = GroundingDinoConfig(
        backbone_config={
            "model_type": "swin",
            "embed_dim": 16,
            "depths": [1, 1, 1, 1],
            "num_heads": [1, 1, 2, 2],
            "window_size": 4,
            "out_indices": [2, 3, 4],
        },
        text_config={
            "model_type": "bert",
            "vocab_size": len(tokenizer),
            "hidden_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "intermediate_size": 64,
        },
        d_model=32,
        encoder_layers=1,
        decoder_layers=2,  # transformers ties the box heads of layers 1.. to layer 0: needs two
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        num_queries=20,
    )
    torch.manual_seed(seed)
    model = GroundingDinoForObjectDetection(config).eval()
    processor = GroundingDinoProcessor(
        image_processor=GroundingDinoImageProcessor(size={"shortest_edge": 64, "longest_edge": 96}),
        tokenizer=tokenizer,
    )
    return _save(model, processor, directory)


def tiny_seggpt_dir(directory: str | Path, seed: int = 0) -> Path:
    """Save a tiny random ``SegGptForImageSegmentation`` (4 layers of width 32, 64 x 64 inputs) and its processor."""
    from transformers import SegGptConfig, SegGptForImageSegmentation, SegGptImageProcessor

    config = SegGptConfig(
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=2,
        mlp_dim=64,
        image_size=(128, 64),  # reference stacked above target, as (896, 448) in the real model
        patch_size=16,
        pretrain_image_size=64,
        decoder_hidden_size=16,
        merge_index=1,
        intermediate_hidden_state_indices=(2, 3),
    )
    torch.manual_seed(seed)
    model = SegGptForImageSegmentation(config).eval()
    return _save(model, SegGptImageProcessor(size={"height": 64, "width": 64}), directory)
