"""Propagation by SAM 2's and SAM 3's video models, against transformers' own video inference on the same inputs.

Tiny random-init ``Sam2VideoModel`` / ``Sam3TrackerVideoModel`` are saved with ``save_pretrained`` and loaded by
the propagator from the folder (the real loading path). The reference is transformers' documented video
workflow: ``init_video_session(video=frames)``, ``add_inputs_to_inference_session``, the model on the prompted
frame, ``propagate_in_video_iterator`` forward then in reverse, ``post_process_masks``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segprompt.errors import UnsupportedPromptError
from segprompt.prompts import Box, MaskPrompt, Points, Prompt
from segprompt.testing import tiny_sam2_video_dir, tiny_sam3_tracker_video_dir
from segprompt.volume.embeddings import plain_embed
from segprompt.volume.propagation import NEVER_STOP, VIDEO_PROPAGATORS
from segprompt.volume.reader import SliceImages, Volume
from segprompt.volume.session import VolumeSession
from segprompt.volume.synthetic import ellipsoid_volume

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FRAMES = 5
PROMPTED = 2


@pytest.fixture(scope="module")
def frames():
    volume, truth, _ = ellipsoid_volume((FRAMES, 36, 44))
    return SliceImages(Volume(volume, "ZYX")), truth


@pytest.fixture(scope="module")
def sam2_folder(tmp_path_factory):
    return tiny_sam2_video_dir(tmp_path_factory.mktemp("sam2_video"))


def reference_masks(model_class, processor_class, folder, images, prompt: Prompt) -> np.ndarray:
    """transformers' video workflow on the whole video, forward then reverse from the prompted frame."""
    model, processor = model_class.from_pretrained(str(folder)).eval(), processor_class.from_pretrained(str(folder))
    video = [images[k] for k in range(len(images))]
    session = processor.init_video_session(video=video, inference_device="cpu")
    processor.add_inputs_to_inference_session(
        session, frame_idx=PROMPTED, obj_ids=1, input_points=[[prompt.points.xy.tolist()]],
        input_labels=[[prompt.points.labels.tolist()]], input_boxes=[[prompt.box.as_array().tolist()]],
    )
    masks = {}
    with torch.inference_mode():
        model(inference_session=session, frame_idx=PROMPTED)
        for reverse in (False, True):
            for out in model.propagate_in_video_iterator(session, start_frame_idx=PROMPTED, reverse=reverse):
                logits = processor.post_process_masks([out.pred_masks], original_sizes=[list(images.image_hw)], binarize=False)[0]
                masks[out.frame_idx] = (logits[0, 0] > 0).numpy()
    return np.stack([masks[k] for k in range(len(images))])


@pytest.mark.parametrize("backend", ["sam2", "sam3-tracker"])
def test_video_propagation_equals_the_transformers_video_workflow(backend, frames, sam2_folder, tmp_path):
    from transformers import Sam2VideoModel, Sam2VideoProcessor, Sam3TrackerVideoModel, Sam3TrackerVideoProcessor

    images, truth = frames
    if backend == "sam2":
        folder, classes = sam2_folder, (Sam2VideoModel, Sam2VideoProcessor)
    else:
        folder, classes = tiny_sam3_tracker_video_dir(tmp_path / "sam3"), (Sam3TrackerVideoModel, Sam3TrackerVideoProcessor)
    prompt = Prompt(points=Points.from_lists(include=[(22.0, 18.0)], exclude=[(2.0, 2.0)]), box=Box.from_mask(truth[PROMPTED]))
    propagator = VIDEO_PROPAGATORS.get(backend)(images, model_dir=folder, embed_image=plain_embed)
    session = VolumeSession(propagator, NEVER_STOP)
    session.prompt(1, PROMPTED, prompt)
    up, down = session.propagate(PROMPTED)
    assert up.slices == (3, 4) and down.slices == (1, 0) and propagator.method == f"{backend} video memory"
    ours = session.to_array() == 1
    expected = reference_masks(*classes, folder, images, prompt)
    assert expected.any(axis=(1, 2)).all()  # the comparison is not between empty masks
    np.testing.assert_array_equal(ours, expected)


def test_objects_share_frame_features_and_corrections_become_conditioning_frames(frames, sam2_folder):
    images, truth = frames
    calls = []

    def counting(segmenter, image, progress):
        calls.append(1)
        return plain_embed(segmenter, image, progress)

    propagator = VIDEO_PROPAGATORS.get("sam2")(images, model_dir=sam2_folder, embed_image=counting)
    session = VolumeSession(propagator, NEVER_STOP)
    session.prompt(1, PROMPTED, Prompt(box=Box.from_mask(truth[PROMPTED])))
    session.set_mask(2, PROMPTED, np.roll(truth[PROMPTED], 5, axis=1))  # a drawn mask: conditions the model
    runs = session.propagate(PROMPTED)
    assert len(runs) == 4 and len(calls) == FRAMES  # one encoder pass per slice for both objects
    tracked = propagator._session(1)
    assert 3 in tracked.output_dict_per_obj[0]["non_cond_frame_outputs"]
    assert all("high_res_masks" not in out for out in tracked.output_dict_per_obj[0]["non_cond_frame_outputs"].values())

    # A correction on tracked slice 3 is a fresh conditioning frame; propagating from it replaces slice 4 only.
    session.prompt(1, 3, Prompt(points=Points.from_lists(include=[(20.0, 18.0)])))
    assert 3 in tracked.output_dict_per_obj[0]["cond_frame_outputs"]
    assert 3 not in tracked.output_dict_per_obj[0]["non_cond_frame_outputs"]
    [up] = session.propagate(3, labels=[1], direction="up")
    assert up.slices == (4,)
    assert len(calls) == FRAMES  # the features were still in memory

    with pytest.raises(UnsupportedPromptError, match="takes a mask or points / a box on one slice, not both"):
        session.prompt(1, 0, Prompt(points=Points.from_lists(include=[(3, 3)]), mask=MaskPrompt(truth[PROMPTED])))
    with pytest.raises(UnsupportedPromptError, match="not text"):
        from segprompt.prompts import Text

        session.prompt(1, 0, Prompt(text=Text("a cell")))
    session.remove(2)
    assert 2 not in propagator._sessions and set(session.objects) == {1}
