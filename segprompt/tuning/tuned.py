"""A tuned CLIPSeg: the prompted network with its tokenizer, normalisation and checkpoint files.

A checkpoint folder holds

* ``prompts.safetensors``: the learnt parameters only (the prompt vectors and
  their small networks; the extra last layer under ``extra_layer.``), float32;
* ``tuning.json``: ``{"format", "method", "hyperparameters", "model_options",
  "base_model", "default_text", "image_size", "trainable_parameters", ...}``.

Loading it onto the same base model restores identical outputs.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..atomic import write_files
from ..errors import CheckpointError, SegpromptError, load_failure
from ..hub import PretrainedModel
from .data import pixel_values
from .methods import create_method
from .model import ModelOptions, PromptedCLIPSeg, load_base

FORMAT = "segprompt-tuning/1"
PROMPTS_FILE = "prompts.safetensors"
META_FILE = "tuning.json"
#: ``tuning.json`` keys written from the model itself; the rest is kept in :attr:`TunedCLIPSeg.extra`.
_OWN_KEYS = {
    "format", "method", "hyperparameters", "model_options", "base_model", "default_text", "image_size", "trainable_parameters",
}  # fmt: skip


@dataclass
class TunedCLIPSeg:
    """A frozen CLIPSeg with learnt prompts, ready to segment from text.

    Attributes:
        net: the prompted network.
        tokenizer: CLIP tokenizer of the base model's processor.
        mean, std: per-channel RGB normalisation of the base model's processor.
        base_model: hub id or folder the base model was loaded from (stored in checkpoints).
        default_text: the phrase used when a caller gives none (the training data's most common text).
        image_size: side the model is run at (CLIPSeg: 352).
        extra: further JSON fields kept in ``tuning.json`` (training summary).
    """

    net: PromptedCLIPSeg
    tokenizer: Any
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    base_model: str
    default_text: str | None = None
    image_size: int = 352
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def create(
        cls,
        base: PretrainedModel,
        base_model: str,
        method: str | None,
        image_size: int = 352,
        model_options: ModelOptions = ModelOptions(),
        **hyperparameters: Any,
    ) -> "TunedCLIPSeg":
        """Wrap ``base`` with a fresh method ``method`` (``None``: no prompts) read as ``model_options`` say."""
        image_processor = base.processor.image_processor
        prompts = None
        if method is not None:
            dims = PromptedCLIPSeg.dims_of(base.model, base.processor.tokenizer)
            prompts = create_method(method, dims, **hyperparameters)
        device = next(base.model.parameters()).device  # the prompts join the base model where it is
        return cls(
            PromptedCLIPSeg(base.model, prompts, model_options).to(device),
            base.processor.tokenizer,
            tuple(image_processor.image_mean),
            tuple(image_processor.image_std),
            base_model,
            image_size=image_size,
        )

    @property
    def device(self) -> torch.device:
        """Where the network runs (move it with ``tuned.net.to(device)``)."""
        return next(self.net.base.parameters()).device

    @property
    def method_name(self) -> str | None:
        return None if self.net.method is None else self.net.method.name

    def tokenize(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(input_ids, attention_mask)``, both ``(B, L)`` int64.

        Phrases are truncated (keeping BOS and EOS) to leave room for the
        context vectors among the text tower's positions (77 for CLIP).
        """
        n_ctx = 0 if self.net.method is None else self.net.method.text_length
        positions = self.net.base.config.text_config.max_position_embeddings
        encoded = self.tokenizer(list(texts), padding=True, truncation=True, max_length=positions - n_ctx, return_tensors="pt")
        return encoded["input_ids"], encoded["attention_mask"]

    def logits(self, images: Sequence[np.ndarray], texts: Sequence[str]) -> torch.Tensor:
        """``(B, S, S)`` logits for ``(S, S, 3)`` uint8 images already resized to :attr:`image_size`."""
        ids, mask = self.tokenize(texts)
        device = self.device
        return self.net(pixel_values(images, self.mean, self.std).to(device), ids.to(device), mask.to(device))

    def save(self, directory: str | Path, **extra: Any) -> Path:
        """Write ``prompts.safetensors`` and ``tuning.json`` into ``directory``, both or neither (atomically)."""
        from safetensors.torch import save

        method = self.net.method
        if method is None:
            raise CheckpointError("nothing to save: the model has no tuning method")
        directory = Path(directory)
        tensors = {name: value.detach().contiguous().cpu() for name, value in self.net.trainable_state().items()}
        meta = {
            "format": FORMAT,
            "method": method.name,
            "hyperparameters": method.hyperparameters,
            "model_options": asdict(self.net.options),
            "base_model": self.base_model,
            "default_text": self.default_text,
            "image_size": self.image_size,
            "trainable_parameters": self.net.num_trainable(),
            **self.extra,
            **extra,
        }
        write_files(
            {directory / PROMPTS_FILE: save(tensors), directory / META_FILE: (json.dumps(meta, indent=2) + "\n").encode()}
        )
        return directory

    @classmethod
    def load(cls, directory: str | Path, base: PretrainedModel | None = None) -> "TunedCLIPSeg":
        """Rebuild a tuned model from a checkpoint folder.

        Args:
            directory: folder written by :meth:`save` (``segprompt tune --out``).
            base: the base model already loaded; by default the checkpoint's
                ``base_model`` is loaded (:func:`load_base`).

        Raises:
            CheckpointError: missing / unreadable files, or prompts that do not fit the base model.
        """
        meta = read_metadata(directory)
        method, hyperparameters, base_model = meta["method"], meta["hyperparameters"], meta["base_model"]
        base = base if base is not None else load_base(base_model)
        tuned = cls.create(base, base_model, method, int(meta.get("image_size", 352)), model_options_of(meta), **hyperparameters)
        tuned.default_text = meta.get("default_text")
        tuned.extra = {k: v for k, v in meta.items() if k not in _OWN_KEYS}
        tuned.load_prompts(directory)
        return tuned

    def load_prompts(self, directory: str | Path) -> None:
        """Load the learnt tensors of the checkpoint in ``directory`` (written for this same method and options).

        Raises:
            CheckpointError: unreadable file, or tensors that do not fit this model.
        """
        from safetensors.torch import load_file

        prompts_path = Path(directory) / PROMPTS_FILE
        try:
            state = load_file(str(prompts_path))
        except Exception as exc:  # safetensors raises its own SafetensorError for a truncated or foreign file
            raise CheckpointError(f"{prompts_path}: cannot read the tuned prompts ({load_failure(exc)})") from exc
        try:
            self.net.load_trainable_state(state)
        except RuntimeError as exc:
            raise CheckpointError(
                f"{prompts_path}: prompts do not fit the base model {self.base_model} ({load_failure(exc)})"
            ) from exc


def read_metadata(directory: str | Path) -> dict[str, Any]:
    """The ``tuning.json`` of a checkpoint folder (e.g. its ``default_text``), checked but without loading any model.

    Raises:
        CheckpointError: a file of the checkpoint is missing, or ``tuning.json`` is invalid.
    """
    directory = Path(directory)
    meta_path = directory / META_FILE
    for path in (meta_path, directory / PROMPTS_FILE):
        if not path.is_file():
            raise CheckpointError(f"{directory}: not a tuning checkpoint ({path.name} is missing)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise CheckpointError(f"{meta_path}: not a valid tuning.json ({exc})") from exc
    if not isinstance(meta, dict):
        raise CheckpointError(f"{meta_path}: not a valid tuning.json (expected an object)")
    missing = [key for key in ("method", "hyperparameters", "base_model") if key not in meta]
    if missing:
        raise CheckpointError(f"{meta_path}: not a valid tuning.json (no {', '.join(missing)})")
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{meta_path}: format {meta.get('format')!r} is not {FORMAT!r}")
    try:
        model_options_of(meta)
    except (TypeError, SegpromptError) as exc:
        raise CheckpointError(f"{meta_path}: bad model_options {meta.get('model_options')!r} ({exc})") from exc
    return meta


def model_options_of(meta: dict[str, Any]) -> ModelOptions:
    """The ``model_options`` of a checked ``tuning.json`` (absent before they existed: the defaults)."""
    return ModelOptions(**(meta.get("model_options") or {}))
