"""EmbeddingCache: re-opening skips the encoder; corrupt entries are detected and recomputed."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import pytest
import torch
from skimage import data as skdata

from segprompt.backends.base import Embedding, Prediction, Segmenter
from segprompt.backends.sam import SamSegmenter
from segprompt.backends.sam_arch import build_sam
from segprompt.cache import EmbeddingCache, image_digest
from segprompt.paths import cache_root
from segprompt.prompts import Box, Points, Prompt

CAMERA = skdata.camera()[100:300, 50:350]  # (200, 300) uint8 grayscale
COFFEE = skdata.coffee()[:150, :220]  # (150, 220, 3) uint8 RGB


@dataclass(eq=False)
class ColourStatsEmbedding(Embedding):
    """A typed embedding mixing a tensor, an array and plain values."""

    means: torch.Tensor
    thumb: np.ndarray
    block: int
    hw: tuple[int, int]


class ColourStats(Segmenter):
    """A real, cheap segmenter whose embedding mixes a tensor, an array and plain values.

    Its "encoder" computes per-channel means and a 4x4 block-mean thumbnail,
    and counts its own calls.
    """

    name = "colour-stats"
    accepts = frozenset({"points"})

    def __init__(self) -> None:
        self.calls = 0

    def embed(self, image, progress=lambda *a: None) -> Embedding:
        self.calls += 1
        rgb = self._rgb(image)
        h, w = rgb.shape[0] // 4 * 4, rgb.shape[1] // 4 * 4
        thumb = rgb[:h, :w].reshape(h // 4, 4, w // 4, 4, 3).mean(axis=(1, 3))
        means = torch.from_numpy(rgb.reshape(-1, 3).mean(axis=0))
        return ColourStatsEmbedding(self.name, self.model_id, rgb.shape[:2], rgb, means, thumb, 4, (h, w))

    def _predict(self, embedding, prompt, multimask) -> Prediction:
        raise NotImplementedError  # the cache never predicts


def _corrupt_tensor_bytes(path, tensor: torch.Tensor) -> None:
    """Flip one byte inside ``tensor``'s stored data, leaving the zip container valid."""
    raw = bytearray(path.read_bytes())
    needle = tensor.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()[:64]
    offset = raw.find(needle)
    assert offset >= 0, "tensor bytes not found in the file"
    raw[offset + 10] ^= 0xFF
    path.write_bytes(bytes(raw))


@contextlib.contextmanager
def encoder_calls(sam: SamSegmenter) -> Iterator[list[int]]:
    """A list that grows by one each time ``sam``'s image encoder runs inside the block."""
    calls: list[int] = []
    handle = sam.model.image_encoder.register_forward_hook(lambda *args: calls.append(1))
    try:
        yield calls
    finally:
        handle.remove()


def test_reopen_skips_the_sam_encoder(tiny_sam, tmp_path):
    with encoder_calls(tiny_sam) as calls:
        cache = EmbeddingCache(tmp_path)
        first = cache.embed(tiny_sam, COFFEE)
        assert len(calls) == 1
        again = cache.embed(tiny_sam, COFFEE.copy())
        assert len(calls) == 1, "a cached image must not run the encoder"
        assert torch.equal(again.features, first.features)
        assert again.input_hw == first.input_hw == (698, 1024)  # 150 * 1024 / 220 = 698.2
        assert (again.backend, again.model_id, again.image_hw) == ("sam", tiny_sam.model_id, (150, 220))
        prompt = Prompt(points=Points([[100, 70]], [1]))
        fresh, cached = tiny_sam.predict(first, prompt), tiny_sam.predict(again, prompt)
        assert np.array_equal(fresh.masks, cached.masks) and np.array_equal(fresh.scores, cached.scores)

        # a truncated entry is dropped and the encoder runs again
        path = cache.path(cache.key(tiny_sam, COFFEE))
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        recomputed = cache.embed(tiny_sam, COFFEE)
        assert len(calls) == 2
        assert torch.equal(recomputed.features, first.features)
        torch.load(path, weights_only=True)  # rewritten whole


def test_round_trip_of_tensors_arrays_and_values(tmp_path):
    segmenter = ColourStats()
    cache = EmbeddingCache(tmp_path)
    first = cache.embed(segmenter, CAMERA)
    second = cache.embed(segmenter, CAMERA)
    assert segmenter.calls == 1
    assert torch.equal(second.means, first.means)
    assert isinstance(second.thumb, np.ndarray)
    assert np.array_equal(second.thumb, first.thumb)
    assert second.thumb.shape == (50, 75)[:2] + (3,)
    assert second.block == 4 and tuple(second.hw) == (200, 300)
    assert second.image.shape == (200, 300, 3) and second.image_hw == (200, 300)
    # the stored file loads with weights_only: tensors and plain values only
    payload = torch.load(cache.path(cache.key(segmenter, second.image)), weights_only=True)
    assert payload["key"] == cache.key(segmenter, second.image)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "flip tensor byte", "foreign entry"])
def test_corrupt_entry_is_dropped_and_recomputed(tmp_path, damage):
    segmenter = ColourStats()
    cache = EmbeddingCache(tmp_path)
    first = cache.embed(segmenter, CAMERA)
    path = cache.path(cache.key(segmenter, first.image))
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:-100])
    elif damage == "garbage":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, path.stat().st_size, dtype=np.uint8).tobytes())
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "flip tensor byte":
        _corrupt_tensor_bytes(path, torch.from_numpy(np.ascontiguousarray(first.thumb)))
    else:  # another image's valid entry copied over this one
        cache.embed(segmenter, COFFEE)
        path.write_bytes(cache.path(cache.key(segmenter, COFFEE)).read_bytes())
    assert segmenter.calls == (2 if damage == "foreign entry" else 1)
    calls_before = segmenter.calls
    again = cache.embed(segmenter, CAMERA)
    assert segmenter.calls == calls_before + 1, f"{damage}: the damaged entry must be recomputed"
    assert np.array_equal(again.thumb, first.thumb)
    assert cache.embed(segmenter, CAMERA) is not None and segmenter.calls == calls_before + 1


def _rewrite_tree(path, change) -> None:
    """Load an entry, let ``change`` edit its tree (a bit flipped in a value), save it back with the old checksum."""
    payload = torch.load(path, weights_only=True)
    change(payload["tree"])
    torch.save(payload, path)


def test_a_changed_non_tensor_value_fails_the_checksum(tiny_sam, tmp_path):
    """Every value read back is covered: a flipped input_hw would give a permanently wrong mask."""
    cache = EmbeddingCache(tmp_path)
    first = cache.embed(tiny_sam, COFFEE)
    path = cache.path(cache.key(tiny_sam, COFFEE))

    def flip_input_hw(tree) -> None:
        rows = tree["fields"]["input_hw"]["tuple"]
        assert rows[0] == 698
        rows[0] ^= 1 << 3  # 698 -> 690

    _rewrite_tree(path, flip_input_hw)
    with encoder_calls(tiny_sam) as calls:
        again = cache.embed(tiny_sam, COFFEE)
    assert len(calls) == 1, "the tampered entry must be recomputed"
    assert again.input_hw == first.input_hw == (698, 1024)
    assert cache.embed(tiny_sam, COFFEE).input_hw == (698, 1024)  # and stored again whole

    colour = ColourStats()
    cache.embed(colour, CAMERA)
    _rewrite_tree(cache.path(cache.key(colour, cache.embed(colour, CAMERA).image)), lambda tree: tree["fields"].update(block=5))
    assert cache.embed(colour, CAMERA).block == 4 and colour.calls == 2


def test_composite_embeddings_round_trip_with_their_parts(tiny_sam, tmp_path):
    """Parts keep their types, backends and values; re-opening runs no encoder."""
    from segprompt.backends.persam import PerSamSegmenter
    from segprompt.compose import ComposedSegmenter

    composed = ComposedSegmenter(PerSamSegmenter(sam=tiny_sam), "classical")  # PerSAM proposes from SAM's embedding
    cache = EmbeddingCache(tmp_path)
    first = cache.embed(composed, COFFEE)
    with encoder_calls(tiny_sam) as calls:
        again = cache.embed(composed, COFFEE)
    assert not calls
    assert type(again) is type(first) and set(again.parts) == {"proposer", "refiner"}
    for role in ("proposer", "refiner"):
        stored, loaded = first.part(role), again.part(role)
        assert type(loaded) is type(stored) and (loaded.backend, loaded.model_id) == (stored.backend, stored.model_id)
    assert again.part("proposer").backend == "sam"
    assert torch.equal(again.part("proposer").features, first.part("proposer").features)
    assert np.array_equal(again.part("refiner").work, first.part("refiner").work)
    assert again.part("refiner").scale == first.part("refiner").scale


def test_a_tiled_embedding_is_cached_per_tile_and_reopens_without_the_encoder(tiny_sam, tmp_path):
    """Each tile's window is its own entry under SAM's key; a damaged tile alone is recomputed."""
    from segprompt.backends.tiled import TiledEmbedding, TiledSegmenter

    tiled = TiledSegmenter(tiny_sam, tile_shape=96, halo=16)  # COFFEE (150, 220): 2 x 3 tiles
    cache = EmbeddingCache(tmp_path)
    with encoder_calls(tiny_sam) as calls:
        first = cache.embed(tiled, COFFEE)
        assert len(calls) == 6 and len(first.grid) == 6
        again = cache.embed(tiled, COFFEE.copy())
        assert len(calls) == 6, "re-opening a tiled image must not run the encoder for any tile"
    assert isinstance(again, TiledEmbedding) and (again.backend, again.model_id) == ("sam", tiled.model_id)
    assert sorted(p.name for p in tmp_path.rglob("*.pt")) == sorted(
        f"{image_digest(COFFEE[tile.window.slices])}.pt" for tile in first.grid.tiles
    )
    for tile, stored, loaded in zip(first.grid.tiles, first.tiles, again.tiles):
        assert loaded.image_hw == tile.window.shape and torch.equal(loaded.features, stored.features)
    prompt = Prompt(points=Points([[100, 70]], [1]), box=Box(20, 10, 200, 140))
    fresh, cached = tiled.predict(first, prompt), tiled.predict(again, prompt)
    assert np.array_equal(fresh.masks, cached.masks) and np.array_equal(fresh.scores, cached.scores)

    # one damaged tile entry: that tile alone runs the encoder again
    tile = first.grid.tiles[4]
    path = cache.path(cache.key(tiny_sam, COFFEE[tile.window.slices]))
    path.write_bytes(path.read_bytes()[:100])
    with encoder_calls(tiny_sam) as calls:
        cache.embed(tiled, COFFEE)
    assert len(calls) == 1
    # a single-tile image shares its entry with the untiled backend
    with encoder_calls(tiny_sam) as calls:
        cache.embed(tiny_sam, COFFEE[:80, :90])
        cache.embed(TiledSegmenter(tiny_sam, tile_shape=96, halo=16), COFFEE[:80, :90])
    assert len(calls) == 1


def test_keys_separate_images_backends_and_models(tiny_sam, tmp_path):
    cache = EmbeddingCache(tmp_path)
    colour = ColourStats()
    other_sam = SamSegmenter(model=build_sam("tiny", seed=1))
    rgb = np.repeat(CAMERA[..., None], 3, axis=2)
    keys = {cache.key(colour, rgb), cache.key(tiny_sam, rgb), cache.key(other_sam, rgb), cache.key(tiny_sam, COFFEE)}
    assert len(keys) == 4
    assert cache.key(tiny_sam, rgb) == f"sam/{tiny_sam.model_id}/{image_digest(rgb)}"
    # grayscale and its RGB replication are the same image once normalised
    cache.embed(colour, CAMERA)
    cache.embed(colour, rgb)
    assert colour.calls == 1
    path = cache.path(cache.key(tiny_sam, rgb))
    assert path.parent.name == tiny_sam.model_id.replace(":", "_") and path.parent.parent.name == "sam"


def test_size_and_clear(tmp_path):
    cache = EmbeddingCache(tmp_path / "emb")
    assert cache.size_bytes() == 0 and cache.clear() == 0
    segmenter = ColourStats()
    cache.embed(segmenter, CAMERA)
    cache.embed(segmenter, COFFEE)
    files = sorted((tmp_path / "emb").rglob("*.pt"))
    assert len(files) == 2
    assert cache.size_bytes() == sum(f.stat().st_size for f in files)
    assert not list((tmp_path / "emb").rglob("*.tmp*")), "no temporary file may be left behind"
    assert cache.clear() == 2 and cache.size_bytes() == 0


def test_default_root_follows_segprompt_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGPROMPT_CACHE", str(tmp_path / "c"))
    assert cache_root() == tmp_path / "c"
    assert EmbeddingCache().root == tmp_path / "c" / "embeddings"
    monkeypatch.delenv("SEGPROMPT_CACHE")
    import platformdirs

    assert cache_root() == __import__("pathlib").Path(platformdirs.user_cache_dir("segprompt"))
