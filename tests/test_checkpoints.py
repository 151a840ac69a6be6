"""Checkpoint registry: fetch only when missing, SHA-256 verification, clear errors; never the network."""

from __future__ import annotations

import hashlib
import re
import socket

import pooch
import pytest
import torch

from segprompt import checkpoints
from segprompt.backends.sam import SamSegmenter
from segprompt.backends.sam_arch import build_sam
from segprompt.checkpoints import (
    SAM_CHECKPOINTS,
    CheckpointInfo,
    checkpoint_dir,
    fetch_checkpoint,
    load_state_dict,
    resolve_checkpoint,
)
from segprompt.errors import CheckpointError

PAYLOAD = b"not really weights, but bytes with a known hash\n" * 100
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


@pytest.fixture
def offline(monkeypatch):
    """Make every DNS lookup fail, as on a machine without network."""

    def no_network(*args, **kwargs):
        raise socket.gaierror(-3, "Temporary failure in name resolution (test: offline)")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)


@pytest.fixture
def fake_entry(monkeypatch):
    """Replace the vit_b registry entry with a small fake file of known hash."""
    info = CheckpointInfo("vit_b", "fake_vit_b.pth", PAYLOAD_SHA)
    monkeypatch.setitem(SAM_CHECKPOINTS, "vit_b", info)
    return info


def _serve(monkeypatch, content: bytes) -> list[str]:
    """Make pooch's HTTP downloader write ``content`` (driving its progress bar); returns the URLs asked."""
    asked: list[str] = []

    def download(self, url, output_file, pooch_instance, check_only=False):
        asked.append(url)
        bar = self.progressbar
        bar.total = len(content)
        with open(output_file, "wb") as handle:
            for start in range(0, len(content), 1024):
                handle.write(content[start : start + 1024])
                bar.update(1024)
        bar.reset()
        bar.update(len(content))
        bar.close()

    monkeypatch.setattr(pooch.HTTPDownloader, "__call__", download)
    return asked


def test_registry_lists_the_official_files():
    assert set(SAM_CHECKPOINTS) == {"vit_b", "vit_l", "vit_h"}
    assert SAM_CHECKPOINTS["vit_h"].filename == "sam_vit_h_4b8939.pth"
    assert SAM_CHECKPOINTS["vit_l"].filename == "sam_vit_l_0b3195.pth"
    assert SAM_CHECKPOINTS["vit_b"].url == "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth"
    for info in SAM_CHECKPOINTS.values():
        assert re.fullmatch(r"[0-9a-f]{64}", info.sha256)
        assert info.path == checkpoint_dir() / info.filename
    assert checkpoint_dir().parent == checkpoints.cache_root()


def test_offline_and_missing_names_file_place_and_hash(offline, fake_entry):
    with pytest.raises(CheckpointError) as caught:
        fetch_checkpoint("vit_b")
    message = str(caught.value)
    assert str(fake_entry.path) in message and fake_entry.sha256 in message and fake_entry.url in message
    assert not fake_entry.path.exists()


def test_default_segmenter_offline_raises_checkpoint_error(offline):
    with pytest.raises(CheckpointError, match="sam_vit_b_01ec64.pth"):
        SamSegmenter()


def test_download_when_missing_with_progress_then_reuse(monkeypatch, fake_entry):
    asked = _serve(monkeypatch, PAYLOAD)
    events = []
    path = fetch_checkpoint("vit_b", progress=lambda done, total, message: events.append((done, total, message)))
    assert path == fake_entry.path and path.read_bytes() == PAYLOAD
    assert asked == [fake_entry.url]
    downloads = [e for e in events if e[2].startswith("downloading")]
    assert downloads and downloads[-1][:2] == (len(PAYLOAD), len(PAYLOAD))
    assert all(done <= total for done, total, _ in downloads)
    # present and verified: no second download, and no second hashing either
    monkeypatch.setattr(checkpoints, "file_sha256", lambda *a, **k: pytest.fail("verified file hashed again"))
    assert fetch_checkpoint("vit_b") == path
    assert asked == [fake_entry.url]


def test_downloaded_file_with_wrong_hash_is_rejected(monkeypatch, fake_entry):
    _serve(monkeypatch, PAYLOAD + b"tampered")
    with pytest.raises(CheckpointError, match=fake_entry.sha256):
        fetch_checkpoint("vit_b")
    assert not fake_entry.path.exists()


def test_present_file_with_wrong_hash_is_rejected_without_download(monkeypatch, fake_entry):
    _serve(monkeypatch, PAYLOAD)
    monkeypatch.setattr(pooch, "retrieve", lambda *a, **k: pytest.fail("a present file must not be downloaded"))
    fake_entry.path.parent.mkdir(parents=True)
    fake_entry.path.write_bytes(b"half a download")
    with pytest.raises(CheckpointError) as caught:
        fetch_checkpoint("vit_b")
    message = str(caught.value)
    assert str(fake_entry.path) in message and fake_entry.sha256 in message
    assert hashlib.sha256(b"half a download").hexdigest() in message


def test_changed_file_is_hashed_again(monkeypatch, fake_entry):
    _serve(monkeypatch, PAYLOAD)
    path = fetch_checkpoint("vit_b")
    path.write_bytes(PAYLOAD[:-1] + b"?")  # same size, new content and mtime
    with pytest.raises(CheckpointError, match="does not match"):
        fetch_checkpoint("vit_b")


def test_unknown_model_type():
    with pytest.raises(CheckpointError, match="vit_x.*vit_h"):
        fetch_checkpoint("vit_x")


def test_local_checkpoint_is_hashed_not_required_to_match(tmp_path):
    model = build_sam("tiny", seed=0)
    path = tmp_path / "my_sam.pth"
    torch.save(model.state_dict(), path)
    resolved, digest = resolve_checkpoint("tiny", path)
    assert resolved == path and digest == hashlib.sha256(path.read_bytes()).hexdigest()
    state = load_state_dict(path)
    assert state.keys() == model.state_dict().keys()


def test_files_that_are_not_sam_checkpoints(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_state_dict(tmp_path / "missing.pth")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"\x00\x01 definitely not a zip")
    with pytest.raises(CheckpointError, match="not a loadable PyTorch checkpoint"):
        load_state_dict(garbage)
    other = tmp_path / "resnet_like.pth"
    torch.save({"conv1.weight": torch.zeros(2, 3)}, other)
    with pytest.raises(CheckpointError, match="not a SAM checkpoint"):
        load_state_dict(other)
    nested = tmp_path / "trainer_state.pth"
    torch.save({"model": {"image_encoder.x": torch.zeros(1)}, "epoch": 3}, nested)
    with pytest.raises(CheckpointError, match="state dict of tensors"):
        load_state_dict(nested)
    pickled = tmp_path / "object.pth"
    torch.save({"image_encoder.x": torch.zeros(1), "cfg": CheckpointInfo("a", "b", "c")}, pickled)
    with pytest.raises(CheckpointError, match="not a loadable"):
        load_state_dict(pickled)  # weights_only refuses arbitrary objects


def test_state_dict_of_wrong_shape_is_a_checkpoint_error(tmp_path):
    state = build_sam("tiny", seed=0).state_dict()
    del state["mask_decoder.iou_token.weight"]
    path = tmp_path / "incomplete.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="do not fit SAM 'tiny'"):
        SamSegmenter("tiny", checkpoint=path)
