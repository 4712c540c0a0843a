"""Device handling on every branch: cpu, cuda, cuda:N, auto and torchrun's LOCAL_RANK.

The CUDA branches run on CPU-only machines with ``torch.cuda`` mocked (is_available,
device_count, set_device); the test marked ``cuda`` needs a real GPU and skips cleanly without one.
"""

from __future__ import annotations

import contextlib
import warnings

import pytest
import torch
from typer.testing import CliRunner

from unseg.cli.main import app
from unseg import devices
from unseg.devices import DeviceError, mixed_precision, resolve_device
from unseg.training import distributed
from unseg.training.distributed import DistributedContext

RUNNER = CliRunner()
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture
def fake_cuda(monkeypatch):
    """A machine with ``count`` GPUs as far as ``torch.cuda`` says; records set_device calls."""

    def install(count: int = 2) -> list[int]:
        calls: list[int] = []
        monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
        monkeypatch.setattr(torch.cuda, "set_device", calls.append)
        return calls

    return install


def test_cpu_and_auto_without_cuda(fake_cuda):
    fake_cuda(0)
    assert resolve_device("cpu") == torch.device("cpu") == resolve_device(" CPU ")
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    for name in ("cuda", "cuda:0", "CUDA:1"):
        with pytest.raises(DeviceError, match="no CUDA device is available"):
            resolve_device(name)


def test_cuda_names_become_indexed_devices(fake_cuda):
    fake_cuda(2)
    assert resolve_device("auto") == torch.device("cuda", 0)
    assert resolve_device("cuda") == torch.device("cuda", 0)  # the bug: an index-less cuda device
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device("cuda", local_rank=1) == torch.device("cuda", 1)
    assert resolve_device("cuda:0", local_rank=1) == torch.device("cuda", 0)  # an explicit index wins
    with pytest.raises(DeviceError, match="cuda:2 asked for, but this machine has 2"):
        resolve_device("cuda:2")
    with pytest.raises(DeviceError, match="cuda:3 asked for"):
        resolve_device("cuda", local_rank=3)
    for bad in ("gpu", "cuda:x", "mps", ""):
        with pytest.raises(DeviceError):
            resolve_device(bad)


def test_training_device_sets_the_current_gpu_with_an_index(fake_cuda):
    """``unseg train --device cuda`` used to call torch.cuda.set_device(torch.device("cuda")) and fail."""
    calls = fake_cuda(2)
    single, rank1 = DistributedContext(), DistributedContext(rank=1, world_size=2, local_rank=1)
    assert distributed.resolve_device("cuda", single) == torch.device("cuda", 0) and calls == [0]
    assert distributed.resolve_device("auto", rank1) == torch.device("cuda", 1) and calls == [0, 1]
    assert distributed.resolve_device("cuda:0", rank1) == torch.device("cuda", 0) and calls == [0, 1, 0]
    assert distributed.resolve_device("cpu", rank1) == torch.device("cpu") and calls == [0, 1, 0]
    fake_cuda(0)
    assert distributed.resolve_device("auto", single) == torch.device("cpu")


def test_torchrun_environment_gives_the_local_rank(monkeypatch, fake_cuda):
    calls = fake_cuda(4)
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "6")
    monkeypatch.setenv("LOCAL_RANK", "2")  # second node, third GPU
    context = distributed.context_from_env()
    assert (context.rank, context.local_rank, context.enabled) == (6, 2, True)
    assert distributed.resolve_device("cuda", context) == torch.device("cuda", 2) and calls == [2]


def test_ddp_wrapper_gets_the_device_index(monkeypatch):
    seen = {}

    class FakeDDP(torch.nn.Module):
        def __init__(self, module, device_ids=None, find_unused_parameters=False):
            super().__init__()
            seen.update(device_ids=device_ids, find_unused_parameters=find_unused_parameters)
            self.module = module

    monkeypatch.setattr(distributed, "DistributedDataParallel", FakeDDP)
    context = DistributedContext(rank=1, world_size=2, local_rank=1)
    distributed.wrap_model(torch.nn.Linear(2, 2), context, torch.device("cuda", 1))
    assert seen == {"device_ids": [1], "find_unused_parameters": True}
    distributed.wrap_model(torch.nn.Linear(2, 2), context, torch.device("cpu"))
    assert seen["device_ids"] is None


def test_commands_report_a_missing_gpu_as_a_bad_option(tmp_path, fake_cuda):
    fake_cuda(0)
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.png").write_bytes(b"")  # never read: the device is checked first
    for args in (["protect", str(tmp_path / "images"), str(tmp_path / "out"), "--device", "cuda"],
                 ["train", "--data", str(tmp_path), "--device", "cuda:1"],
                 ["evaluate", "--quick", "--out", str(tmp_path / "run"), "--device", "cuda"]):
        result = RUNNER.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert "no CUDA device is available" in " ".join(result.output.replace("│", " ").split()), args
        assert "Traceback" not in result.output


@needs_cuda
def test_protector_and_training_device_on_a_real_gpu():
    from unseg.protection import Protector

    with pytest.warns(UserWarning, match="UNTRAINED"):
        protector = Protector.load("small", device="cuda")
    assert protector.device == torch.device("cuda", torch.cuda.current_device())
    assert next(protector.generator.parameters()).device.type == "cuda"
    assert distributed.resolve_device("cuda", DistributedContext()).index == 0


@contextlib.contextmanager
def _no_warning():
    """Any warning inside raises."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


@pytest.mark.parametrize("fast", [True, False])
def test_bf16_autocast_falls_back_to_fp32_on_a_cpu_without_bf16_kernels(monkeypatch, fast):
    """Presets ask for bf16 to be fast; where the CPU has no native bf16 kernels (measured 13x
    slower there) the same call runs in fp32 and warns once per process."""
    monkeypatch.setattr(devices, "bf16_is_fast", lambda device: fast)
    monkeypatch.setattr(devices, "_slow_bf16_warned", False)
    layer, x = torch.nn.Linear(4, 4), torch.randn(2, 4)
    with pytest.warns(RuntimeWarning, match="fp32") if not fast else _no_warning():
        with mixed_precision(torch.device("cpu"), True):
            out = layer(x)
    assert out.dtype == (torch.bfloat16 if fast else torch.float32)
    with mixed_precision(torch.device("cpu"), False):
        assert layer(x).dtype == torch.float32
    with _no_warning():  # the fallback warned already
        with mixed_precision(torch.device("cpu"), True):
            layer(x)


@pytest.fixture
def denormals_kept():
    """Subnormal floats kept (the CPU's default) for the test, and again after it."""
    torch.set_flush_denormal(False)
    yield
    torch.set_flush_denormal(False)


SUBNORMAL = 1e-39  # below float32's smallest normal number, 1.18e-38


def _times_one() -> float:
    return float(torch.tensor([SUBNORMAL]) * 1.0)


def test_flush_denormals_zeroes_subnormals_here_and_in_threads_started_after(denormals_kept):
    import threading

    assert _times_one() > 0
    assert devices.flush_denormals()
    assert _times_one() == 0
    seen = []
    worker = threading.Thread(target=lambda: seen.append(_times_one()))
    worker.start()
    worker.join()
    assert seen == [0.0]


def test_victim_training_flushes_denormals(denormals_kept):
    from unseg.data.segmentation import DatasetSpec
    from unseg.evaluation.training import SplitTensors, TrainSchedule, train_victim
    from unseg.evaluation.victims import parse_victim

    spec = DatasetSpec(name="toy", num_classes=2, ignore_index=None, class_names=("bg", "a"),
                       objects="foreground", primary_metric="iou")
    masks = torch.zeros(2, 32, 32, dtype=torch.long)
    masks[:, 8:20, 8:20] = 1
    split = SplitTensors(torch.zeros(2, 3, 32, 32, dtype=torch.uint8), masks)
    train_victim(parse_victim("unet"), spec, split, split, TrainSchedule(epochs=1, batch_size=2), torch.device("cpu"), 0,
                 progress=None)
    assert _times_one() == 0
