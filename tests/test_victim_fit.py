"""How evaluation victims bring images to their training size: stretched (each axis onto the size)
or letterboxed (aspect kept, padded bottom/right with black pixels and the set's padding label)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from evaluation_helpers import TOY_SPEC, VOID, write_toy_folder
from unseg.data.segmentation import KVASIR_SEG, CAMVID, VICTIM_FITS, fitted_size, resize_mask, resize_pair
from unseg.evaluation import EvaluationConfig, run_evaluation
from unseg.evaluation import protocol

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _square_object(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """A grey image with a 20 x 20 white square (label 1) at rows / columns 10–29."""
    pixels = np.full((height, width, 3), 90, np.uint8)
    mask = np.zeros((height, width), np.uint8)
    mask[10:30, 10:30] = 1
    pixels[mask == 1] = 255
    return pixels, mask


def test_stretch_fills_the_size_and_letterbox_keeps_the_aspect():
    assert fitted_size(40, 100, (32, 48), "stretch") == (32, 48)
    assert fitted_size(40, 100, (32, 48), "letterbox") == (19, 48)  # scale min(32/40, 48/100) = 0.48
    assert fitted_size(100, 40, (32, 48), "letterbox") == (32, 13)
    assert fitted_size(64, 96, (32, 48), "letterbox") == (32, 48)  # same aspect: nothing to pad
    with pytest.raises(ValueError, match="unknown victim fit"):
        fitted_size(40, 100, (32, 48), "crop")
    assert VICTIM_FITS == ("stretch", "letterbox")


def test_letterboxed_pair_pads_bottom_right_and_keeps_a_square_square():
    pixels, mask = _square_object(60, 120)
    image, label = resize_pair(pixels, mask, (32, 48), "letterbox", pad_label=VOID)
    rows, columns = fitted_size(60, 120, (32, 48), "letterbox")
    assert image.shape == (3, 32, 48) and label.shape == (32, 48) and (rows, columns) == (24, 48)
    assert (image[:, rows:] == 0).all() and (label[rows:] == VOID).all()
    direct = F.interpolate(torch.from_numpy(pixels).permute(2, 0, 1)[None].float(), size=(rows, columns),
                           mode="bilinear", align_corners=False, antialias=True)[0].round().clamp(0, 255).to(torch.uint8)
    assert torch.equal(image[:, :rows], direct)
    ys, xs = torch.nonzero(label == 1, as_tuple=True)
    assert ys.max() - ys.min() == xs.max() - xs.min()  # one scale on both axes
    stretched = resize_mask(mask, (32, 48))
    ys, xs = torch.nonzero(stretched == 1, as_tuple=True)
    assert ys.max() - ys.min() > xs.max() - xs.min()  # 32/60 down the rows, 48/120 across


def test_stretch_is_the_default_and_has_no_padding():
    pixels, mask = _square_object(60, 120)
    image, label = resize_pair(pixels, mask, (32, 48))
    expected = F.interpolate(torch.from_numpy(pixels).permute(2, 0, 1)[None].float(), size=(32, 48),
                             mode="bilinear", align_corners=False, antialias=True)[0].round().clamp(0, 255).to(torch.uint8)
    assert torch.equal(image, expected)
    assert torch.equal(label, resize_mask(mask, (32, 48), "stretch", pad_label=VOID))


def test_padding_label_is_the_ignore_label_else_background():
    assert CAMVID.pad_label == CAMVID.ignore_index == 11
    assert KVASIR_SEG.ignore_index is None and KVASIR_SEG.pad_label == 0


def test_config_defaults_to_stretch_and_a_changed_fit_is_another_schedule():
    config = EvaluationConfig(victims=("unet",), methods=("clean",))
    assert config.victim_fit == "stretch"
    older = {k: v for k, v in config.to_dict().items() if k != "victim_fit"}  # results.json before stop 31
    assert EvaluationConfig.from_dict(older).fingerprint() == config.fingerprint()
    assert config.replace(victim_fit="letterbox").fingerprint() != config.fingerprint()
    with pytest.raises(ValueError, match="victim_fit must be one of"):
        config.replace(victim_fit="crop")


def test_a_letterboxing_victim_trains_and_is_scored_on_padded_splits(tmp_path, monkeypatch):
    write_toy_folder(tmp_path / "data", train=3, test=2, spec=TOY_SPEC)  # images 37x47 / 41x53 into 32x64
    seen = []

    def recording(victim, spec, train, test, *args, **kwargs):
        seen.append((train, test))
        return real(victim, spec, train, test, *args, **kwargs)

    real = protocol.train_victim
    monkeypatch.setattr(protocol, "train_victim", recording)
    config = EvaluationConfig(data_root=str(tmp_path / "data"), datasets=("toy",), victims=("unet",), methods=("clean",),
                              epochs=1, batch_size=2, image_height=32, victim_fit="letterbox", progress=False)
    data = run_evaluation(config, tmp_path / "out")
    (train, test), = seen
    assert train.images.shape[-2:] == test.images.shape[-2:] == (32, 64)
    columns = max(fitted_size(*size, (32, 64), "letterbox")[1] for size in ((37, 47), (41, 53)))
    assert columns < 64
    assert (train.images[:, :, :, columns:] == 0).all() and (train.masks[:, :, columns:] == VOID).all()
    assert (test.masks[:, :, columns:] == VOID).all() and (test.masks[:, :, :columns] != VOID).any()
    assert data["config"]["victim_fit"] == "letterbox" and len(data["cells"]) == 1
