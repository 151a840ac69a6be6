"""segprompt's public testing API: real architectures with random weights, offline.

For tests (segprompt's own and those of code built on it), CI and cost
benchmarks, which must never download weights. SAM's part of this API is the
``"tiny"`` architecture of :data:`segprompt.backends.sam_arch.SAM_ARCHITECTURES`
(``build_sam("tiny", seed=0)``, or ``--model-type tiny`` with your own file).

Transformers models: ``random_<model>`` builds a real model class with random
weights in one of two sizes: ``"tiny"`` (seconds on a CPU, for tests) or
``"full"`` (the released architecture, for cost measurements), and returns a :class:`~segprompt.hub.PretrainedModel` a
backend takes as ``pretrained=``. ``tiny_<model>_dir(directory, seed)`` saves
the tiny one as a folder laid out like a hub snapshot, so tests load it through
the same code path (:mod:`segprompt.hub`) as a real checkpoint.

Outputs are meaningless; shapes, dtypes, coordinate frames and the pre- and
post-processing are real. Text models get OpenAI CLIP's real vocabulary
(:func:`segprompt.text_tokenizer.clip_tokenizer`), so token ids are real too.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator, Literal

import torch

from .hub import PretrainedModel
from .text_tokenizer import clip_tokenizer

#: ImageNet statistics, the normalisation of CLIPSeg's and SegGPT's processors.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: The tiny CLIPSeg's vision tower sees 64 x 64 (4 x 4 patches of 16) but its
#: processor resizes to 96 x 96, as the real model sees 224 but is fed 352.
TINY_CLIPSEG_PROCESSOR_SIDE = 96


Size = Literal["tiny", "full"]


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed torch's generator for a random initialisation, restoring its previous state afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _pretrained(model: torch.nn.Module, processor: Any, size: Size, seed: int) -> PretrainedModel:
    return PretrainedModel(model.eval(), processor, f"random-{size}-seed{seed}")


def save_model_dir(pretrained: PretrainedModel, directory: str | Path) -> Path:
    """Save a model and its processor into ``directory`` as a hub-snapshot-like folder; return it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    pretrained.model.save_pretrained(str(directory))
    pretrained.processor.save_pretrained(str(directory))
    return directory


def _tiny_clip_towers() -> dict[str, dict[str, int]]:
    """``text_config`` and ``vision_config`` of the tiny CLIP-style models: 2-layer, width-32 towers, 64 x 64 input."""
    layers = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}
    return {"text_config": dict(layers), "vision_config": {**layers, "image_size": 64, "patch_size": 16}}


def random_clipseg(size: Size = "tiny", seed: int = 0, refined: bool = True) -> PretrainedModel:
    """A random ``CLIPSegForImageSegmentation`` and its processor (CLIP tokenizer, ImageNet-normalising ViT processor).

    ``"tiny"``: 2-layer, width-32 towers (about 1.7 M parameters, mostly the
    real 49 408-token embedding table), vision input 64 x 64 fed 96 x 96.
    ``"full"``: the architecture of ``CIDAS/clipseg-rd64-refined`` (ViT-B/16
    vision tower, 64-wide decoder, processor side 352).
    ``refined=False``: the decoder of ``CIDAS/clipseg-rd64`` instead, one plain
    transposed convolution (``use_complex_transposed_convolution=False``).
    """
    from transformers import CLIPSegConfig, CLIPSegForImageSegmentation, CLIPSegProcessor, ViTImageProcessor

    if size == "tiny":
        config = CLIPSegConfig(
            **_tiny_clip_towers(),
            projection_dim=16,
            extract_layers=(0, 1),
            reduce_dim=16,
            decoder_num_attention_heads=2,
            decoder_intermediate_size=32,
            use_complex_transposed_convolution=refined,
        )
        side = TINY_CLIPSEG_PROCESSOR_SIDE
    else:
        config = CLIPSegConfig(vision_config={"patch_size": 16}, use_complex_transposed_convolution=refined)
        side = 352
    image_processor = ViTImageProcessor(
        size={"height": side, "width": side}, image_mean=list(IMAGENET_MEAN), image_std=list(IMAGENET_STD)
    )
    with _seeded(seed):
        model = CLIPSegForImageSegmentation(config)
    return _pretrained(model, CLIPSegProcessor(image_processor=image_processor, tokenizer=clip_tokenizer()), size, seed)


def random_owlv2(size: Size = "tiny", seed: int = 0) -> PretrainedModel:
    """A random ``Owlv2ForObjectDetection`` and its processor.

    ``"tiny"``: width-32, 2-layer towers, 64 x 64 input (4 x 4 patches).
    ``"full"``: the default configuration, the architecture of
    ``google/owlv2-base-patch16-ensemble`` (960 x 960 input).
    """
    from transformers import Owlv2Config, Owlv2ForObjectDetection, Owlv2ImageProcessor, Owlv2Processor

    if size == "tiny":
        # The class head compares image class embeddings (text width) with projected
        # text queries, so the text width must equal projection_dim, as in the real model.
        config = Owlv2Config(
            **_tiny_clip_towers(),
            projection_dim=32,
        )
    else:
        config = Owlv2Config()
    side = config.vision_config.image_size
    processor = Owlv2Processor(
        image_processor=Owlv2ImageProcessor(size={"height": side, "width": side}),
        tokenizer=clip_tokenizer(model_max_length=config.text_config.max_position_embeddings),
    )
    with _seeded(seed):
        model = Owlv2ForObjectDetection(config)
    return _pretrained(model, processor, size, seed)


#: Words of the tiny BERT vocabulary (Grounding DINO's text tower); anything else is ``[UNK]``.
TINY_BERT_WORDS = ("a", "an", "the", "of", "cat", "dog", "polyp", "cell", "lesion", "photo", "object", "person")


def tiny_bert_tokenizer():
    """A lower-casing ``BertTokenizer`` over ``[PAD] [UNK] [CLS] [SEP] [MASK] . ,`` + :data:`TINY_BERT_WORDS`."""
    from transformers import BertTokenizer

    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ","] + list(TINY_BERT_WORDS)
    return BertTokenizer(vocab={token: index for index, token in enumerate(tokens)}, do_lower_case=True)


def random_grounding_dino(size: Size = "tiny", seed: int = 0) -> PretrainedModel:
    """A random ``GroundingDinoForObjectDetection`` and its processor (tokenizer: :func:`tiny_bert_tokenizer`).

    ``"tiny"``: Swin backbone of width 16, width-32 transformer, 20 queries;
    the processor resizes the shortest side to 128 (longest at most 160).
    ``"full"``: the default configuration, the architecture of
    ``IDEA-Research/grounding-dino-tiny`` (Swin-T, BERT-base, 900 queries;
    shortest side 800, longest at most 1333). Only the token ids differ from
    the real model's (BERT's vocabulary is not available offline), not the cost.
    """
    from transformers import GroundingDinoConfig, GroundingDinoForObjectDetection, GroundingDinoImageProcessor
    from transformers import GroundingDinoProcessor

    tokenizer = tiny_bert_tokenizer()
    if size == "tiny":
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
        # At least 128 pixels a side: the coarsest level (stride 64) needs 2 x 2 cells for its GroupNorm.
        image_processor = GroundingDinoImageProcessor(size={"shortest_edge": 128, "longest_edge": 160})
    else:
        config = GroundingDinoConfig()
        image_processor = GroundingDinoImageProcessor()
    with _seeded(seed):
        model = GroundingDinoForObjectDetection(config)
    return _pretrained(model, GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer), size, seed)


def random_seggpt(size: Size = "tiny", seed: int = 0) -> PretrainedModel:
    """A random ``SegGptForImageSegmentation`` and its image processor.

    ``"tiny"``: 4 layers of width 32, 64 x 64 inputs (reference above target: 128 x 64).
    ``"full"``: the default configuration, the architecture of
    ``BAAI/seggpt-vit-large`` (ViT-L, 448 x 448 inputs).
    """
    from transformers import SegGptConfig, SegGptForImageSegmentation, SegGptImageProcessor

    if size == "tiny":
        config = SegGptConfig(
            hidden_size=32,
            num_hidden_layers=4,
            num_attention_heads=2,
            mlp_dim=64,
            image_size=(128, 64),
            patch_size=16,
            pretrain_image_size=64,
            decoder_hidden_size=16,
            merge_index=1,
            intermediate_hidden_state_indices=(2, 3),
        )
        processor = SegGptImageProcessor(size={"height": 64, "width": 64})
    else:
        config = SegGptConfig()
        processor = SegGptImageProcessor()
    with _seeded(seed):
        model = SegGptForImageSegmentation(config)
    return _pretrained(model, processor, size, seed)


def tiny_clipseg_dir(directory: str | Path, seed: int = 0, refined: bool = True) -> Path:
    """Save the tiny :func:`random_clipseg` into ``directory``."""
    return save_model_dir(random_clipseg("tiny", seed, refined), directory)


def tiny_owlv2_dir(directory: str | Path, seed: int = 0) -> Path:
    """Save the tiny :func:`random_owlv2` into ``directory``."""
    return save_model_dir(random_owlv2("tiny", seed), directory)


def tiny_grounding_dino_dir(directory: str | Path, seed: int = 0) -> Path:
    """Save the tiny :func:`random_grounding_dino` into ``directory``."""
    return save_model_dir(random_grounding_dino("tiny", seed), directory)


def tiny_seggpt_dir(directory: str | Path, seed: int = 0) -> Path:
    """Save the tiny :func:`random_seggpt` into ``directory``."""
    return save_model_dir(random_seggpt("tiny", seed), directory)
