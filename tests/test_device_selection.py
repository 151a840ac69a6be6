"""Choosing a device and a precision, and what a user sees when a device is wrong or out of memory.

Runs on the CPU: a machine with CUDA is simulated by ``torch.cuda`` reporting
one device (:func:`simulated_cuda.pretend_cuda_available`); an out-of-memory
error is torch's own ``torch.cuda.OutOfMemoryError`` raised by a stub where
the work runs, then caught at the boundary (CLI verb, napari worker,
benchmark) by its type.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import skimage.data
import torch

from segprompt.backends import create, create_from_options
from segprompt.backends.sam import SamSegmenter
from segprompt.backends.sam_arch import build_sam
from segprompt.cli import main
from segprompt.devices import AUTO, auto_chunk_size, available_devices, device_memory_error, resolve_device, translate_out_of_memory
from segprompt.errors import DeviceError, DeviceMemoryError, SegpromptError
from segprompt.io import read_mask, write_image
from segprompt.metrics import iou
from segprompt.precision import PRECISIONS, autocast, check_precision, ieee_float32
from segprompt.prompts import Points, Prompt
from simulated_cuda import pretend_cuda_available

pytestmark = pytest.mark.usefixtures("one_torch_thread")

OUT_OF_MEMORY = "CUDA out of memory. Tried to allocate 20.00 GiB. GPU 0 has a total capacity of 79.1 GiB of which 1.2 GiB is free."


@pytest.fixture(scope="module")
def coins_png(tmp_path_factory):
    path = tmp_path_factory.mktemp("images") / "coins.png"
    write_image(path, skimage.data.coins()[:96, :128])
    return path


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "tiny.pth"
    torch.save(build_sam("tiny", seed=0).state_dict(), path)
    return path


# -- resolving names ---------------------------------------------------------------------------------


def test_auto_is_the_cpu_without_an_accelerator():
    if torch.cuda.is_available() or torch.backends.mps.is_available():
        pytest.skip("this machine has an accelerator; auto picks it (tested below with a simulated CUDA)")
    assert resolve_device(AUTO) == resolve_device(None) == resolve_device(" Auto ") == torch.device("cpu")
    assert available_devices() == ["auto", "cpu"]


def test_auto_prefers_cuda(monkeypatch):
    pretend_cuda_available(monkeypatch)
    assert resolve_device("auto") == resolve_device("cuda") == resolve_device("cuda:0") == torch.device("cuda", 0)
    assert available_devices()[:3] == ["auto", "cpu", "cuda:0"]


@pytest.mark.parametrize(
    "name, message",
    [
        ("gpu", "device 'gpu' is not a device name; available: auto, cpu"),
        ("cuda:x", "device 'cuda:x' is not a device name"),
        ("meta", "device 'meta': segprompt runs on cpu, cuda or mps"),
    ],
)
def test_bad_names_are_one_line_errors_naming_the_value(name, message):
    with pytest.raises(DeviceError) as caught:
        resolve_device(name)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_device_this_machine_lacks_names_what_it_has(monkeypatch):
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match=r"device 'cuda': .*CUDA.*; available: auto, cpu"):
            resolve_device("cuda")
    pretend_cuda_available(monkeypatch)
    with pytest.raises(DeviceError, match=r"device 'cuda:7': this machine has 1 CUDA device \(cuda:0 to cuda:0\); available: auto, cpu, cuda:0"):
        resolve_device("cuda:7")


def test_every_model_backend_defaults_to_auto():
    import inspect

    from segprompt.backends import backend_names, get_backend_class
    from segprompt.volume.video import VideoPropagator

    for name in backend_names():
        parameters = inspect.signature(get_backend_class(name).__init__).parameters
        if "device" in parameters:
            assert parameters["device"].default == AUTO, name
    assert inspect.signature(VideoPropagator.__init__).parameters["device"].default == AUTO


def test_a_backend_refuses_a_bad_device_before_loading_weights(tmp_path):
    with pytest.raises(DeviceError, match="cuda:3"):
        create("sam", model_type="vit_h", checkpoint=tmp_path / "absent.pth", device="cuda:3")  # no file is opened
    with pytest.raises(DeviceError, match="'npu'"):
        create_from_options("clipseg", model_dir=str(tmp_path), device="npu")


# -- command line -------------------------------------------------------------------------------------


def test_segment_device_auto_works(coins_png, tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "m.png"
    assert main(["segment", str(coins_png), "--point", "60,50", "--out", str(out), "--device", "auto"]) == 0
    args = ["segment", str(coins_png), "--backend", "sam", "--model-type", "tiny", "--checkpoint", str(tiny_checkpoint),
            "--point", "60,50", "--out", str(out), "--device", "auto"]
    assert main(args) == 0 and read_mask(out).shape == (96, 128)
    assert "(sam)" in capsys.readouterr().err


@pytest.mark.parametrize(
    "verb",
    [
        ["segment", "{image}", "--point", "5,5", "--out", "{out}/m.png"],
        ["everything", "{image}", "--out", "{out}/folder"],
        ["segment-volume", "{image}", "--slice", "0", "--point", "5,5", "--out", "{out}/v.tif"],
        ["bench", "pointprompt", "--data", "{out}", "--out", "{out}/run"],
        ["bench", "show-or-tell", "--data", "{out}", "--method", "clipseg:text", "--out", "{out}/run"],
        ["tune", "--method", "coop", "--data", "{out}", "--out", "{out}/run"],
    ],
)
def test_a_device_this_machine_lacks_is_one_line_and_exit_2(verb, coins_png, tmp_path, capsys):
    args = [part.format(image=coins_png, out=tmp_path) for part in verb] + ["--device", "cuda:7"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cuda:7" in err and "available: auto, cpu" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "nothing is written"


def test_accelerator_flags_for_a_backend_without_a_model_are_refused(coins_png, tmp_path, capsys, monkeypatch):
    pretend_cuda_available(monkeypatch)
    base = ["segment", str(coins_png), "--point", "5,5", "--out", str(tmp_path / "m.png")]
    assert main(base + ["--device", "cuda"]) == 2
    assert "the 'classical' backend runs no model" in capsys.readouterr().err
    assert main(base + ["--precision", "bf16"]) == 2
    assert "--precision bf16: the 'classical' backend runs in float32 only" in capsys.readouterr().err
    assert main(base + ["--device", "cpu"]) == 0  # what it computes on anyway


def test_a_cuda_out_of_memory_error_says_what_to_lower(coins_png, tiny_checkpoint, tmp_path, capsys, monkeypatch):
    def out_of_memory(self, image, progress=None):
        raise torch.cuda.OutOfMemoryError(OUT_OF_MEMORY)

    monkeypatch.setattr(SamSegmenter, "embed", out_of_memory)
    args = ["segment", str(coins_png), "--backend", "sam", "--model-type", "tiny", "--checkpoint", str(tiny_checkpoint),
            "--point", "60,50", "--out", str(tmp_path / "m.png")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "segprompt segment: error: the GPU ran out of memory (CUDA out of memory. Tried to allocate 20.00 GiB): "
        "use --precision bf16 or fp16, or a smaller image, or run on the CPU (--device cpu)"
    )
    assert not (tmp_path / "m.png").exists()


def test_other_errors_are_not_taken_for_out_of_memory(coins_png, tiny_checkpoint, tmp_path, monkeypatch):
    def failing(self, image, progress=None):
        raise RuntimeError("CUDA out of memory (a RuntimeError that only says so)")

    monkeypatch.setattr(SamSegmenter, "embed", failing)
    args = ["segment", str(coins_png), "--backend", "sam", "--model-type", "tiny", "--checkpoint", str(tiny_checkpoint),
            "--point", "60,50", "--out", str(tmp_path / "m.png")]
    with pytest.raises(RuntimeError, match="only says so"):  # by type, never by text: a bug stays a traceback
        main(args)


def test_translate_out_of_memory_in_the_core():
    with pytest.raises(DeviceMemoryError, match=r"lower --chunk-size, or run on the CPU \(--device cpu\)"):
        with translate_out_of_memory("lower --chunk-size"):
            raise torch.cuda.OutOfMemoryError(OUT_OF_MEMORY)
    error = device_memory_error(torch.cuda.OutOfMemoryError(OUT_OF_MEMORY), "use bf16", cpu_choice="device cpu")
    assert isinstance(error, SegpromptError) and str(error).endswith("use bf16, or run on the CPU (device cpu)")


def test_the_napari_worker_reports_out_of_memory_with_the_jobs_advice():
    from napari_plugin._widget import _Failed, _in_background, _ProgressRelay

    def job(progress):
        raise torch.cuda.OutOfMemoryError(OUT_OF_MEMORY)

    result = _in_background(job, _ProgressRelay(), "choose precision bf16").work()  # the worker's body, here
    assert isinstance(result, _Failed)
    assert result.message.endswith("choose precision bf16, or run on the CPU (device cpu)")


def _benchmark(name: str):
    """A ``benchmarks/`` script as a module (they are scripts, not a package)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["bench_decoder", "bench_cache"])
def test_the_benchmarks_report_out_of_memory_and_bad_devices_in_one_line(name, monkeypatch, capsys):
    bench = _benchmark(name)

    def out_of_memory(args):
        raise torch.cuda.OutOfMemoryError(OUT_OF_MEMORY)

    monkeypatch.setattr(bench, "run", out_of_memory)
    with pytest.raises(SystemExit) as exited:
        bench.main(["--model", "tiny"])
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"{name}: error: the GPU ran out of memory")
    assert "): lower --" in err and err.endswith("or run on the CPU (--device cpu)")
    monkeypatch.undo()
    with pytest.raises(SystemExit):
        _benchmark(name).main(["--model", "tiny", "--device", "cuda:7"])
    assert "cuda:7" in capsys.readouterr().err


# -- precision ---------------------------------------------------------------------------------------------


def test_precisions_are_checked():
    assert [check_precision(p) for p in PRECISIONS] == ["fp32", "bf16", "fp16"]
    with pytest.raises(SegpromptError, match="precision 'fp64' is not one of fp32, bf16, fp16"):
        check_precision("fp64")
    with autocast(torch.device("cpu"), "bf16"):
        assert torch.nn.functional.linear(torch.ones(2, 3), torch.ones(4, 3)).dtype == torch.bfloat16
    with autocast(torch.device("cpu"), "fp32"):
        assert torch.nn.functional.linear(torch.ones(2, 3), torch.ones(4, 3)).dtype == torch.float32


#: Measured on this tiny random-init SAM (coffee at 96 x 128, 12 clicks): bf16 mean 0.999, worst 0.997
#: (fp16: mean 0.9999, but CPUs have no fp16 arithmetic: 4x slower than fp32 here, so it is left to the GPU test).
#: The bounds leave room for other CPUs' kernels.
BF16_MEAN_IOU, BF16_WORST_IOU = 0.99, 0.95


@pytest.mark.parametrize("precision", ["bf16"])
def test_reduced_precision_runs_on_the_cpu_and_agrees_with_fp32(precision, tiny_sam_model):
    image = skimage.data.coffee()[::4, ::4][:96, :128]
    full = SamSegmenter(model=tiny_sam_model, device="cpu")
    reduced = SamSegmenter(model=tiny_sam_model, device="cpu", precision=precision)
    assert reduced.model_id == full.model_id + f"+{precision}"  # its embeddings are cached apart
    reference, embedding = full.embed(image), reduced.embed(image)
    assert embedding.features.dtype == torch.float32 and not torch.equal(embedding.features, reference.features)
    rng = np.random.default_rng(0)
    ious = []
    for _ in range(12):
        prompt = Prompt(points=Points([[rng.uniform(5, 123), rng.uniform(5, 91)]], [1]))
        ious.append(iou(reduced.predict(embedding, prompt).best_mask, full.predict(reference, prompt).best_mask))
    assert np.mean(ious) >= BF16_MEAN_IOU and min(ious) >= BF16_WORST_IOU


def test_the_encoder_autocast_is_local_to_the_call(tiny_sam_model):
    reduced = SamSegmenter(model=tiny_sam_model, device="cpu", precision="bf16")
    reduced.embed(np.zeros((32, 32, 3), np.uint8))
    assert not torch.is_autocast_enabled("cpu")
    assert torch.nn.functional.linear(torch.ones(2, 3), torch.ones(4, 3)).dtype == torch.float32


# -- IEEE float32 on CUDA and batch sizes ----------------------------------------------------------------------


@pytest.fixture
def tf32_on():
    """Both TF32 switches on for the test (as a user may set them), then as they were."""
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def test_ieee_float32_turns_tf32_off_while_any_thread_is_inside_and_restores_it(tf32_on):
    cuda = torch.device("cuda", 0)
    entered, release = threading.Barrier(2), threading.Event()
    seen = []

    def worker():
        with ieee_float32(cuda):
            entered.wait()
            release.wait()
            seen.append((torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32))

    thread = threading.Thread(target=worker)
    thread.start()
    with ieee_float32(cuda):
        entered.wait()
    assert not torch.backends.cuda.matmul.allow_tf32  # the other thread is still inside
    release.set()
    thread.join()
    assert seen == [(False, False)]
    assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32  # restored by the last to leave
    with ieee_float32(torch.device("cpu")):
        assert torch.backends.cudnn.allow_tf32  # nothing to do elsewhere


def test_auto_chunk_size(monkeypatch):
    assert auto_chunk_size(torch.device("cpu"), 10, default=4, limit=256) == 4
    pretend_cuda_available(monkeypatch, free_bytes=1000)
    cuda = torch.device("cuda", 0)
    assert auto_chunk_size(cuda, 10, default=4, limit=256) == 50
    assert auto_chunk_size(cuda, 10, default=4, limit=16) == 16
    assert auto_chunk_size(cuda, 10**6, default=4, limit=16) == 1


def test_chunk_size_for_every_batch_predictor(monkeypatch):
    from segprompt.backends.base import CPU_CHUNK_SIZE, MAX_CHUNK_SIZE, chunk_size_for

    cpu = torch.device("cpu")
    assert chunk_size_for(None, cpu, 10) == CPU_CHUNK_SIZE and chunk_size_for(7, cpu, 10) == 7
    with pytest.raises(ValueError, match="chunk_size must be at least 1, got 0"):
        chunk_size_for(0, cpu, 10)
    pretend_cuda_available(monkeypatch, free_bytes=10**9)
    assert chunk_size_for(None, torch.device("cuda", 0), 10) == MAX_CHUNK_SIZE
    assert chunk_size_for(None, torch.device("cuda", 0), 10**8) == 5  # half of 1 GB over 100 MB


# -- on a real GPU (skipped here) -------------------------------------------------------------------------------

REQUIRES_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none here)")


@REQUIRES_CUDA
def test_cuda_scoring_equals_the_predictor_loop_without_tf32(tiny_sam_model):
    """On CUDA the fast scoring path is IEEE float32: within the CPU's margins of SamPredictor run without TF32."""
    from segment_anything import SamPredictor

    from segprompt.evaluation import score_prompts

    image = skimage.data.coffee()[::2, ::2]
    model = build_sam("tiny", seed=0).to("cuda")
    segmenter = SamSegmenter(model=model, device="cuda")
    embedding = segmenter.embed(image)
    gt = np.zeros(image.shape[:2], bool)
    gt[60:180, 80:220] = True
    rng = np.random.default_rng(0)
    prompts = [Prompt(points=Points([[rng.uniform(0, 299), rng.uniform(0, 199)]], [1])) for _ in range(32)]
    fast = score_prompts(segmenter, embedding, prompts, gt)
    exact = score_prompts(segmenter, embedding, prompts, gt, exact=True)
    predictor = SamPredictor(model)
    with ieee_float32(torch.device("cuda")):
        predictor.set_image(image)
        loop = []
        for prompt in prompts:
            masks, scores, _ = predictor.predict(prompt.points.xy, prompt.points.labels)
            loop.append(iou(masks[int(np.argmax(scores))], gt))
    assert np.abs(fast.iou - np.array(loop)).max() < 1e-5
    np.testing.assert_array_equal(exact.iou, np.array(loop))


@REQUIRES_CUDA
@pytest.mark.parametrize("name", ["sam", "persam-f"])
def test_backends_run_on_a_real_gpu(name):
    image = skimage.data.coffee()[::4, ::4]
    segmenter = create(name, model=build_sam("tiny", seed=0), device="cuda", **({"fit_iterations": 5} if name != "sam" else {}))
    mask = np.zeros(image.shape[:2], bool)
    mask[30:90, 40:120] = True
    from segprompt.prompts import VisualReference

    prompt = Prompt(points=Points([[60.0, 50.0]], [1])) if name == "sam" else Prompt(reference=VisualReference(image, mask))
    answer = segmenter.predict(segmenter.embed(image), prompt)
    assert answer.masks.shape[1:] == image.shape[:2]


@REQUIRES_CUDA
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_reduced_precision_on_a_real_gpu_agrees_with_fp32(precision):
    image = skimage.data.coffee()[::4, ::4]
    full = SamSegmenter(model=build_sam("tiny", seed=0), device="cuda")
    reduced = SamSegmenter(model=build_sam("tiny", seed=0), device="cuda", precision=precision)
    reference, embedding = full.embed(image), reduced.embed(image)
    prompts = [Prompt(points=Points([[20.0 + 10 * k, 50.0]], [1])) for k in range(10)]
    ious = [iou(reduced.predict(embedding, p).best_mask, full.predict(reference, p).best_mask) for p in prompts]
    assert np.mean(ious) >= BF16_MEAN_IOU and min(ious) >= BF16_WORST_IOU
