"""Shared test set-up: offline hub, few threads, the tiny networks and small helpers."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(int(os.environ.get("UNSEG_TEST_THREADS", "2")))  # 1 when sharing the CPU

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _tiny_sam():
    from unseg.models import SamConfig

    # A SAM-layout ViT of width 32, depth 2 at 64 px: a generator forward pass takes a few ms on CPU.
    return SamConfig(img_size=64, patch_size=8, encoder_dim=32, encoder_depth=2, encoder_heads=2,
                     global_attn_indexes=(1,), window_size=4, prompt_dim=32, decoder_mlp_dim=64, decoder_heads=2)


@pytest.fixture(scope="session")
def tiny_sam():
    """The tiny :class:`~unseg.models.SamConfig` the protection, model and evaluation tests share."""
    return _tiny_sam()


@pytest.fixture(scope="session")
def tiny_generator_path(tmp_path_factory) -> Path:
    """``tiny.safetensors``: an untrained generator of :func:`tiny_sam` (seed 0, metadata
    ``trained: false``), written once per test session. Read it, never write to it."""
    from unseg.models import GeneratorConfig, build_generator, save_model

    path = tmp_path_factory.mktemp("generator") / "tiny.safetensors"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        save_model(path, build_generator(GeneratorConfig(sam=_tiny_sam())), {"trained": False})
    return path


@pytest.fixture
def shared_data() -> Path:
    """Path of the real datasets beside the repository; skips when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data not present")
    return SHARED_DATA


@pytest.fixture(scope="module")
def one_torch_thread():
    """Run a test module on one torch thread (restored after): for tiny networks a second thread
    only adds synchronisation overhead, which is large when other jobs share the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
