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


# -- the transformers SAM family and SAM 3 ------------------------------------------------------
#
# Tiny configurations keep the real input frames (1024 x 1024; SAM 3: 1008 x 1008 with 14-pixel
# patches), so the processors, point scaling and low-resolution logits (256 / 288) are the
# released models' exactly; only the widths and depths shrink.

#: Width of the tiny SAM-family prompt encoders, mask decoders and feature necks.
TINY_SAM_WIDTH = 32


def _tiny_sam_decoder() -> dict[str, dict[str, int]]:
    """``prompt_encoder_config`` and ``mask_decoder_config`` of a tiny SAM 2-style model."""
    width = TINY_SAM_WIDTH
    return {
        "prompt_encoder_config": {"hidden_size": width},
        "mask_decoder_config": {"hidden_size": width, "mlp_dim": 64, "num_attention_heads": 2, "iou_head_hidden_dim": width},
    }


def random_sam2(size: Size = "tiny", seed: int = 0, variant: str = "large") -> PretrainedModel:
    """A random ``Sam2Model`` and its ``Sam2Processor``.

    ``"tiny"``: a 5-block Hiera of widths 8-64 (one block per stage, two in
    the last, the second with global attention), width-32 neck and decoder,
    1024 input.
    ``"full"``: the architecture of ``facebook/sam2.1-hiera-<variant>``
    (``tiny``, ``small``, ``base-plus``, ``large``).
    """
    from transformers import Sam2Config, Sam2ImageProcessor, Sam2Model, Sam2Processor

    if size == "tiny":
        backbone = {
            "hidden_size": 8,
            "blocks_per_stage": [1, 1, 1, 2],
            "embed_dim_per_stage": [8, 16, 32, 64],
            "num_attention_heads_per_stage": [1, 1, 2, 2],
            "global_attention_blocks": [4],  # not a stage's first block: those pool queries in windows
            "window_positional_embedding_background_size": [4, 4],
        }
        vision = {"backbone_channel_list": [64, 32, 16, 8], "fpn_hidden_size": TINY_SAM_WIDTH}
        config = Sam2Config(vision_config=_sam2_vision(backbone, **vision), **_tiny_sam_decoder())
    else:
        hiera = SAM2_HIERA[variant]
        config = Sam2Config(vision_config=_sam2_vision(hiera, backbone_channel_list=_channels(hiera)))
    with _seeded(seed):
        model = Sam2Model(config)
    return _pretrained(model, Sam2Processor(image_processor=Sam2ImageProcessor()), size, seed)


#: Hiera hyper-parameters of the released SAM 2.1 sizes (transformers' ``convert_sam2_to_hf.get_config``).
SAM2_HIERA: dict[str, dict[str, Any]] = {
    "tiny": {
        "hidden_size": 96,
        "blocks_per_stage": [1, 2, 7, 2],
        "embed_dim_per_stage": [96, 192, 384, 768],
        "num_attention_heads_per_stage": [1, 2, 4, 8],
        "global_attention_blocks": [5, 7, 9],
        "window_positional_embedding_background_size": [7, 7],
    },
    "base-plus": {
        "hidden_size": 112,
        "blocks_per_stage": [2, 3, 16, 3],
        "embed_dim_per_stage": [112, 224, 448, 896],
        "num_attention_heads_per_stage": [2, 4, 8, 16],
        "global_attention_blocks": [12, 16, 20],
        "window_positional_embedding_background_size": [14, 14],
    },
    "large": {
        "hidden_size": 144,
        "blocks_per_stage": [2, 6, 36, 4],
        "embed_dim_per_stage": [144, 288, 576, 1152],
        "num_attention_heads_per_stage": [2, 4, 8, 16],
        "global_attention_blocks": [23, 33, 43],
        "window_positional_embedding_background_size": [7, 7],
        "window_size_per_stage": [8, 4, 16, 8],
    },
}
SAM2_HIERA["small"] = {**SAM2_HIERA["tiny"], "blocks_per_stage": [1, 2, 11, 2], "global_attention_blocks": [7, 10, 13]}


def _channels(backbone: dict[str, Any]) -> list[int]:
    return list(reversed(backbone["embed_dim_per_stage"]))


def _sam2_vision(backbone: dict[str, Any], **vision: Any) -> dict[str, Any]:
    """A ``Sam2VisionConfig`` dict around Hiera hyper-parameters."""
    return {"model_type": "sam2_vision_model", "backbone_config": {"model_type": "sam2_hiera_det_model", **backbone}, **vision}


def random_sam_hq(size: Size = "tiny", seed: int = 0, variant: str = "vit_b") -> PretrainedModel:
    """A random ``SamHQModel`` and its ``SamHQProcessor`` (segment-anything's padded 1024 frame).

    ``"tiny"``: a 2-layer ViT of width 32 (global attention in the second),
    width-32 decoder. ``"full"``: the architecture of
    ``syscv-community/sam-hq-vit-<base|large|huge>`` for ``variant`` ``vit_b``/``vit_l``/``vit_h``.
    """
    from transformers import SamHQConfig, SamHQModel, SamHQProcessor, SamImageProcessor

    if size == "tiny":
        width = TINY_SAM_WIDTH
        vision = {
            "hidden_size": width,
            "output_channels": width,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "global_attn_indexes": [1],
            "mlp_dim": 64,
            "num_pos_feats": width // 2,
        }
        decoder = {**_tiny_sam_decoder()["mask_decoder_config"], "vit_dim": width}
        config = SamHQConfig(vision_config=vision, prompt_encoder_config={"hidden_size": width}, mask_decoder_config=decoder)
    else:
        vision = SAM_HQ_VIT[variant]
        config = SamHQConfig(vision_config=vision, mask_decoder_config={"vit_dim": vision["hidden_size"]})
    with _seeded(seed):
        model = SamHQModel(config)
    return _pretrained(model, SamHQProcessor(image_processor=SamImageProcessor()), size, seed)


#: ViT hyper-parameters of SAM's (and SAM-HQ's) released sizes.
SAM_HQ_VIT: dict[str, dict[str, Any]] = {
    "vit_b": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "global_attn_indexes": [2, 5, 8, 11]},
    "vit_l": {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16, "global_attn_indexes": [5, 11, 17, 23]},
    "vit_h": {"hidden_size": 1280, "num_hidden_layers": 32, "num_attention_heads": 16, "global_attn_indexes": [7, 15, 23, 31]},
}


def random_edgetam(size: Size = "tiny", seed: int = 0) -> PretrainedModel:
    """A random ``EdgeTamModel`` and its ``Sam2Processor`` (timm backbone, built offline with ``pretrained=False``).

    ``"tiny"``: timm's ``test_convnext`` (0.2 M parameters, strides 4-32) with a
    width-32 neck and decoder. ``"full"``: the architecture of
    ``yonigozlan/EdgeTAM-hf`` (timm ``repvit_m1``; note that transformers'
    default ``EdgeTamConfig`` builds a ResNet-50 instead, its ``architecture``
    key being misspelt, so it is named here).
    """
    from transformers import EdgeTamConfig, EdgeTamModel, EdgeTamVisionConfig, Sam2ImageProcessor, Sam2Processor
    from transformers import TimmWrapperConfig

    architecture, channels = ("test_convnext", [64, 48, 32, 24]) if size == "tiny" else ("repvit_m1", [384, 192, 96, 48])
    backbone = TimmWrapperConfig(
        architecture=architecture, model_args={"in_chans": 3, "features_only": True, "out_indices": [0, 1, 2, 3]}
    )
    if size == "tiny":
        vision = EdgeTamVisionConfig(backbone_config=backbone, backbone_channel_list=channels, fpn_hidden_size=TINY_SAM_WIDTH)
        config = EdgeTamConfig(vision_config=vision, **_tiny_sam_decoder())
    else:
        config = EdgeTamConfig(vision_config=EdgeTamVisionConfig(backbone_config=backbone, backbone_channel_list=channels))
    with _seeded(seed):
        model = EdgeTamModel(config)
    return _pretrained(model, Sam2Processor(image_processor=Sam2ImageProcessor()), size, seed)


def _sam3_configs(size: Size) -> tuple[Any, Any]:
    """``(Sam3Config, Sam3TrackerConfig)`` sharing one vision configuration (the backbone both read)."""
    from transformers import Sam3Config, Sam3TrackerConfig

    if size == "full":
        return Sam3Config(), Sam3TrackerConfig()
    width = TINY_SAM_WIDTH
    layers = {"hidden_size": width, "num_attention_heads": 2, "intermediate_size": 64}
    vit = {"model_type": "sam3_vit_model", **layers, "num_hidden_layers": 2, "global_attn_indexes": [1]}
    vision = {"model_type": "sam3_vision_model", "backbone_config": vit, "fpn_hidden_size": width}
    text = {
        "model_type": "clip_text_model",
        **layers,
        "vocab_size": 49408,  # OpenAI CLIP's vocabulary: real token ids
        "projection_dim": width,
        "num_hidden_layers": 1,
        "max_position_embeddings": 32,
    }
    detector = Sam3Config(
        vision_config=vision,
        text_config=text,
        geometry_encoder_config={**layers, "num_layers": 1},
        detr_encoder_config={**layers, "num_layers": 1},
        detr_decoder_config={**layers, "num_layers": 1, "num_queries": 20},
        mask_decoder_config={"hidden_size": width, "num_attention_heads": 2},
    )
    tracker = Sam3TrackerConfig(vision_config=vision, **_tiny_sam_decoder())
    return detector, tracker


def _sam3_processor() -> Any:
    from transformers import Sam3ImageProcessor, Sam3Processor

    return Sam3Processor(image_processor=Sam3ImageProcessor(), tokenizer=clip_tokenizer(model_max_length=32))


def random_sam3(size: Size = "tiny", seed: int = 0) -> PretrainedModel:
    """A random ``Sam3Model`` (the concept detector) and its ``Sam3Processor``.

    ``"tiny"``: 2-layer width-32 ViT (1008 input, 14-pixel patches), a 1-layer
    width-32 CLIP text tower over the real 49 408-token vocabulary, 1-layer
    DETR encoder/decoder with 20 queries. ``"full"``: the architecture of
    ``facebook/sam3`` (ViT with 32 layers of width 1024, 24-layer text tower,
    200 queries; about 0.85 B parameters).
    """
    from transformers import Sam3Model

    detector, _ = _sam3_configs(size)
    with _seeded(seed):
        model = Sam3Model(detector)
    return _pretrained(model, _sam3_processor(), size, seed)


def random_sam3_tracker(size: Size = "tiny", seed: int = 0) -> PretrainedModel:
    """A random ``Sam3TrackerModel`` and its ``Sam3TrackerProcessor`` (sizes as :func:`random_sam3`)."""
    from transformers import Sam3ImageProcessor, Sam3TrackerModel, Sam3TrackerProcessor

    _, tracker = _sam3_configs(size)
    with _seeded(seed):
        model = Sam3TrackerModel(tracker)
    return _pretrained(model, Sam3TrackerProcessor(image_processor=Sam3ImageProcessor()), size, seed)


def random_sam3_pair(size: Size = "tiny", seed: int = 0) -> tuple[PretrainedModel, PretrainedModel]:
    """SAM 3's detector and tracker (:func:`random_sam3`, :func:`random_sam3_tracker`) reading one ViT's weights.

    As in the ``facebook/sam3`` checkpoint, where both models load the same
    backbone, so a composition of the two runs it once per image
    (:class:`~segprompt.backends.base.SharedBackbone`). The two models hold
    their own copies of the weights.
    """
    detector, tracker = random_sam3(size, seed), random_sam3_tracker(size, seed)
    tracker.model.vision_encoder.backbone.load_state_dict(detector.model.vision_encoder.backbone.state_dict())
    return detector, tracker


def tiny_sam3_dir(directory: str | Path, seed: int = 0) -> Path:
    """A tiny random SAM 3 checkpoint laid out like ``facebook/sam3``; both ``sam3`` and ``sam3-tracker`` load it.

    As in the release, one ``sam3_video`` configuration holds the detector
    and the tracker, the tracker reads the detector's ViT backbone through its
    own neck, and the weights are stored under ``detector_model.``,
    ``tracker_model.`` and ``tracker_neck.``. The state dict is written
    directly: ``Sam3VideoModel.save_pretrained`` in transformers 5.25 doubles
    the ``tracker_model.`` prefix, which the loaders then do not find.
    """
    from safetensors.torch import save_file
    from transformers import Sam3VideoConfig, Sam3VideoModel

    detector, tracker = _sam3_configs("tiny")
    tracker_video = {**tracker.to_dict(), "model_type": "sam3_tracker_video", **_TINY_SAM3_MEMORY}
    with _seeded(seed):
        video = Sam3VideoModel(Sam3VideoConfig(detector_config=detector, tracker_config=tracker_video))
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    video.config.save_pretrained(str(directory))
    weights = {key: value.detach().contiguous() for key, value in video.state_dict().items()}
    save_file(weights, str(directory / "model.safetensors"), metadata={"format": "pt"})
    _sam3_processor().save_pretrained(str(directory))
    return directory


#: The tiny checkpoint's video-memory modules (unused on single images, but part of the release layout).
_TINY_SAM3_MEMORY = {
    "memory_attention_hidden_size": TINY_SAM_WIDTH,
    "memory_attention_num_layers": 1,
    "memory_attention_feed_forward_hidden_size": 64,
    "memory_encoder_hidden_size": TINY_SAM_WIDTH,
    "memory_encoder_output_channels": 16,
    "mask_downsampler_embed_dim": TINY_SAM_WIDTH,
    "memory_fuser_embed_dim": TINY_SAM_WIDTH,
    "memory_fuser_intermediate_dim": 64,
    "memory_fuser_num_layers": 1,
}


# -- video models (volume propagation) --------------------------------------------------------
#
# The memory modules fix some widths: memory attention reads 64-channel memories (transformers
# hard-codes ``kv_in_dim=64``) and object pointers are split into memory-width chunks, so the
# decoder is 128 wide. To keep a propagation over a few frames at a second, the tiny video
# models see 256 x 256 (SAM 2) / 224 x 224 (SAM 3, 14-pixel patches) frames instead of 1024 / 1008.

#: Input side of the tiny video models.
TINY_SAM2_VIDEO_SIDE = 256
TINY_SAM3_VIDEO_SIDE = 224
_TINY_VIDEO_WIDTH = 128


def _tiny_video_memory(grid: int) -> dict[str, Any]:
    """Memory-module settings of the tiny video models, whose coarsest feature map is ``grid x grid``."""
    width = _TINY_VIDEO_WIDTH
    return {
        "prompt_encoder_config": {"hidden_size": width},
        "mask_decoder_config": {"hidden_size": width, "mlp_dim": 64, "num_attention_heads": 2, "iou_head_hidden_dim": width},
        "memory_attention_hidden_size": width,
        "memory_attention_num_layers": 1,
        "memory_attention_feed_forward_hidden_size": 64,
        "memory_attention_rope_feat_sizes": [grid, grid],
        "memory_encoder_hidden_size": width,
        "memory_encoder_output_channels": 64,
        "mask_downsampler_embed_dim": width,
        "memory_fuser_embed_dim": width,
        "memory_fuser_intermediate_dim": 64,
        "memory_fuser_num_layers": 1,
    }


def random_sam2_video(size: Size = "tiny", seed: int = 0, variant: str = "large") -> PretrainedModel:
    """A random ``Sam2VideoModel`` and its ``Sam2VideoProcessor`` (image and video processors).

    ``"tiny"``: the tiny Hiera of :func:`random_sam2` on 256 x 256 frames,
    128-wide neck, decoder and memory, one memory-attention and one fuser
    layer. ``"full"``: the architecture of ``facebook/sam2.1-hiera-<variant>``.
    """
    from transformers import Sam2ImageProcessor, Sam2VideoConfig, Sam2VideoModel, Sam2VideoProcessor
    from transformers import Sam2VideoVideoProcessor

    if size == "tiny":
        side, grid = TINY_SAM2_VIDEO_SIDE, TINY_SAM2_VIDEO_SIDE // 16
        backbone = {
            "hidden_size": 8,
            "blocks_per_stage": [1, 1, 1, 2],
            "embed_dim_per_stage": [8, 16, 32, 64],
            "num_attention_heads_per_stage": [1, 1, 2, 2],
            "global_attention_blocks": [4],
            "window_positional_embedding_background_size": [4, 4],
            "image_size": [side, side],
        }
        vision = _sam2_vision(
            backbone, backbone_channel_list=[64, 32, 16, 8], fpn_hidden_size=_TINY_VIDEO_WIDTH,
            backbone_feature_sizes=[[4 * grid, 4 * grid], [2 * grid, 2 * grid], [grid, grid]],
        )
        memory = _tiny_video_memory(grid)
        memory["prompt_encoder_config"]["image_size"] = side
        config = Sam2VideoConfig(vision_config=vision, image_size=side, **memory)
        sizes = {"size": {"height": side, "width": side}}
    else:
        hiera = SAM2_HIERA[variant]
        config = Sam2VideoConfig(vision_config=_sam2_vision(hiera, backbone_channel_list=_channels(hiera)))
        side, sizes = 1024, {}
    processor = Sam2VideoProcessor(
        image_processor=Sam2ImageProcessor(**sizes), video_processor=Sam2VideoVideoProcessor(**sizes), target_size=side
    )
    with _seeded(seed):
        model = Sam2VideoModel(config)
    return _pretrained(model, processor, size, seed)


def random_sam3_tracker_video(size: Size = "tiny", seed: int = 0) -> PretrainedModel:
    """A random ``Sam3TrackerVideoModel`` and its ``Sam3TrackerVideoProcessor``.

    ``"tiny"``: a 2-layer width-32 ViT (14-pixel patches) on 224 x 224 frames,
    128-wide neck, decoder and memory. ``"full"``: the tracker of ``facebook/sam3``
    (1008 x 1008 frames).
    """
    from transformers import Sam2VideoVideoProcessor, Sam3ImageProcessor, Sam3TrackerVideoConfig
    from transformers import Sam3TrackerVideoModel, Sam3TrackerVideoProcessor

    # SAM 3's normalisation (mean = std = 0.5), as its image processor's.
    stats = {"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}
    if size == "tiny":
        side, grid = TINY_SAM3_VIDEO_SIDE, TINY_SAM3_VIDEO_SIDE // 14
        vit = {
            "model_type": "sam3_vit_model", "hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64,
            "num_hidden_layers": 2, "global_attn_indexes": [1], "image_size": side, "window_size": 8,
            "pretrain_image_size": side,
        }
        vision = {
            "model_type": "sam3_vision_model", "backbone_config": vit, "fpn_hidden_size": _TINY_VIDEO_WIDTH,
            "backbone_feature_sizes": [[4 * grid, 4 * grid], [2 * grid, 2 * grid], [grid, grid]],
        }
        memory = _tiny_video_memory(grid)
        memory["prompt_encoder_config"]["image_size"] = side
        config = Sam3TrackerVideoConfig(vision_config=vision, image_size=side, **memory)
    else:
        config, side = Sam3TrackerVideoConfig(), 1008
    sizes = {"size": {"height": side, "width": side}}
    processor = Sam3TrackerVideoProcessor(
        image_processor=Sam3ImageProcessor(**sizes), video_processor=Sam2VideoVideoProcessor(**sizes, **stats),
        target_size=side,
    )
    with _seeded(seed):
        model = Sam3TrackerVideoModel(config)
    return _pretrained(model, processor, size, seed)


def tiny_sam2_video_dir(directory: str | Path, seed: int = 0) -> Path:
    """Save the tiny :func:`random_sam2_video` into ``directory``."""
    return save_model_dir(random_sam2_video("tiny", seed), directory)


def tiny_sam3_tracker_video_dir(directory: str | Path, seed: int = 0) -> Path:
    """Save the tiny :func:`random_sam3_tracker_video` into ``directory``."""
    return save_model_dir(random_sam3_tracker_video("tiny", seed), directory)


def tiny_sam2_dir(directory: str | Path, seed: int = 0) -> Path:
    """Save the tiny :func:`random_sam2` into ``directory``."""
    return save_model_dir(random_sam2("tiny", seed), directory)


def tiny_sam_hq_dir(directory: str | Path, seed: int = 0) -> Path:
    """Save the tiny :func:`random_sam_hq` into ``directory``."""
    return save_model_dir(random_sam_hq("tiny", seed), directory)


def tiny_edgetam_dir(directory: str | Path, seed: int = 0) -> Path:
    """Save the tiny :func:`random_edgetam` into ``directory``."""
    return save_model_dir(random_edgetam("tiny", seed), directory)
