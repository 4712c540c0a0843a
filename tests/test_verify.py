"""``unseg verify``: passes on a folder written by ``unseg protect``; each kind of damage fails
with its own line; the learnability probe runs end to end on tiny data."""

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from unseg.cli.main import app
from unseg.protection.verify import file_format, verify_protected

RUNNER = CliRunner()


def _rgb(height, width, seed):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def protected_set(tmp_path_factory, tiny_generator_path) -> tuple[Path, Path, Path]:
    """(images, masks, protected): three images (one in a sub-folder, one without objects)
    protected by ``unseg protect --masks`` with a tiny random generator."""
    root = tmp_path_factory.mktemp("verify")
    generator = tiny_generator_path
    images, masks = root / "images", root / "masks"
    (images / "sub").mkdir(parents=True)
    (masks / "sub").mkdir(parents=True)
    Image.fromarray(_rgb(37, 53, 1)).save(images / "a.png")
    Image.fromarray(_rgb(20, 30, 2)).save(images / "sub" / "b.jpg", quality=95)
    Image.fromarray(_rgb(24, 24, 3)).save(images / "empty.png")
    labels = np.zeros((37, 53), np.uint8)
    labels[5:20, 10:40] = 2
    labels[25:30, 5:15] = 1
    Image.fromarray(labels).save(masks / "a.png")
    Image.fromarray(np.pad(np.full((10, 10), 255, np.uint8), ((5, 5), (10, 10)))).save(masks / "sub" / "b.png")
    Image.fromarray(np.zeros((24, 24), np.uint8)).save(masks / "empty.png")
    out = root / "protected"
    result = RUNNER.invoke(app, ["protect", str(images), str(out), "--masks", str(masks), "--generator", str(generator)])
    assert result.exit_code == 0, result.output
    return images, masks, out


def _verify(*args):
    return RUNNER.invoke(app, ["verify", *map(str, args)])


def _region(masks: Path, name: str) -> np.ndarray:
    return np.asarray(Image.open(masks / name)) != 0


def test_passes_on_a_protected_folder_with_masks_manifest_or_nothing(protected_set):
    images, masks, out = protected_set
    for extra in (["--masks", masks], [], ["--epsilon", "8", "--epsilon-bg", "2"]):
        result = _verify(images, out, *extra)
        assert result.exit_code == 0, result.output
        assert "3 of 3 protected files pass, 0 fail" in result.stdout
        assert "FAIL" not in result.stdout
    report = verify_protected(images, out, masks=masks)
    checks = {check.source: check for check in report.checks}
    assert set(checks) == {"a.png", "empty.png", "sub/b.jpg"} and report.ok
    assert checks["sub/b.jpg"].output == "sub/b.png" and checks["sub/b.jpg"].format == "PNG"
    # saturated noise spends the budget: 8 levels on the region, 2 off it, measured exactly
    assert (checks["a.png"].linf_inside, checks["a.png"].linf_outside) == (8, 2)
    assert checks["a.png"].mode == "RGB 8-bit" and checks["a.png"].size == (53, 37)
    assert checks["empty.png"].linf_inside == 0 and checks["empty.png"].linf_outside == 2
    from_manifest = {check.source: check for check in verify_protected(images, out).checks}
    assert from_manifest["empty.png"].region == "manifest: no prompt"
    assert from_manifest["a.png"].region == "manifest: region size"


def test_tighter_budget_than_the_one_used_fails(protected_set):
    images, masks, out = protected_set
    result = _verify(images, out, "--masks", masks, "--epsilon", "6", "--epsilon-bg", "2")
    assert result.exit_code == 1
    assert "FAIL a.png: inside: change of 8 levels on the region, budget ε = 6" in result.stdout


def _jpeg_resave(out: Path, masks: Path) -> str:
    Image.open(out / "a.png").save(out / "a.png", format="JPEG", quality=98)  # same name, JPEG content
    return "FAIL a.png: lossy: JPEG is lossy"


def _resize(out: Path, masks: Path) -> str:
    Image.open(out / "sub" / "b.png").resize((31, 21)).save(out / "sub" / "b.png")
    return "FAIL sub/b.jpg: size: size 31x21, original 30x20"


def _change_inside(out: Path, masks: Path) -> str:
    pixels = np.asarray(Image.open(out / "a.png")).copy()
    pixels[10, 20] = np.where(pixels[10, 20] > 127, pixels[10, 20] - 40, pixels[10, 20] + 40)
    Image.fromarray(pixels).save(out / "a.png")
    return "FAIL a.png: inside: change of"


def _change_outside(out: Path, masks: Path) -> str:
    assert not _region(masks, "a.png")[0, 0]
    pixels = np.asarray(Image.open(out / "a.png")).copy()
    pixels[0, 0] = np.where(pixels[0, 0] > 127, pixels[0, 0] - 5, pixels[0, 0] + 5)
    Image.fromarray(pixels).save(out / "a.png")
    return "FAIL a.png: outside: change of"


def _missing(out: Path, masks: Path) -> str:
    (out / "sub" / "b.png").unlink()
    return "FAIL sub/b.jpg: missing: no protected file"


def _gray(out: Path, masks: Path) -> str:
    Image.open(out / "a.png").convert("L").save(out / "a.png")
    return "FAIL a.png: mode: mode gray 8-bit, original RGB 8-bit"


@pytest.mark.parametrize("damage", [_jpeg_resave, _resize, _change_inside, _change_outside, _missing, _gray])
def test_each_kind_of_damage_fails_with_a_clear_line(protected_set, tmp_path, damage):
    images, masks, out = protected_set
    copy = tmp_path / "published"
    shutil.copytree(out, copy)
    expected = damage(copy, masks)
    result = _verify(images, copy, "--masks", masks)
    assert result.exit_code == 1, result.output
    assert expected in result.stdout, result.stdout
    assert "2 of 3 protected files pass, 1 fail" in result.stdout
    if damage in (_jpeg_resave, _resize, _missing, _gray):  # caught without the masks too
        assert expected in _verify(images, copy).stdout


def test_manifest_region_size_catches_background_damage_without_masks(protected_set, tmp_path):
    images, masks, out = protected_set
    copy = tmp_path / "published"
    shutil.copytree(out, copy)
    pixels = np.asarray(Image.open(copy / "a.png")).astype(int)
    background = ~_region(masks, "a.png")
    original = np.asarray(Image.open(images / "a.png")).astype(int)
    pixels[background] = np.clip(original[background] + 6, 0, 255)  # 6 > ε_bg, <= ε: only a count can tell
    Image.fromarray(pixels.astype(np.uint8)).save(copy / "a.png")
    result = _verify(images, copy)
    assert result.exit_code == 1
    assert "FAIL a.png: region:" in result.stdout and "but the manifest's region covers only" in result.stdout


def test_file_format_reads_content_not_name(tmp_path):
    pixels = _rgb(8, 8, 0)
    Image.fromarray(pixels).save(tmp_path / "looks.png", format="JPEG")
    Image.fromarray(pixels).save(tmp_path / "ok.tif", compression="tiff_lzw")
    Image.fromarray(pixels).save(tmp_path / "lossy.tif", compression="jpeg")
    Image.fromarray(pixels).save(tmp_path / "lossless.webp", lossless=True)
    Image.fromarray(pixels).save(tmp_path / "lossy.webp", quality=90)
    assert file_format(tmp_path / "looks.png") == ("JPEG", False)
    assert file_format(tmp_path / "ok.tif") == ("TIFF", True)
    assert file_format(tmp_path / "lossy.tif") == ("TIFF", False)
    assert file_format(tmp_path / "lossless.webp") == ("WEBP lossless", True)
    assert file_format(tmp_path / "lossy.webp") == ("WEBP lossy", False)


def test_bad_options_exit_2(protected_set, tmp_path):
    images, masks, out = protected_set
    assert "--probe needs --masks" in _verify(images, out, "--probe").stderr
    assert _verify(images, out, "--probe").exit_code == 2
    assert _verify(images, tmp_path / "none").exit_code == 2
    assert _verify(images, out, "--epsilon", "2", "--epsilon-bg", "4").exit_code == 2


def test_probe_trains_clean_and_protected_victims(protected_set, tmp_path, one_torch_thread):
    images, masks, out = protected_set
    root = tmp_path / "more"
    shutil.copytree(images, root / "images")
    shutil.copytree(masks, root / "masks")
    shutil.copytree(out, root / "protected")
    for index in range(3):  # a few more protected pairs (a copy stands in for the protection)
        pixels = _rgb(32, 32, 10 + index)
        Image.fromarray(pixels).save(root / "images" / f"extra{index}.png")
        Image.fromarray(pixels).save(root / "protected" / f"extra{index}.png")
        mask = np.zeros((32, 32), np.uint8)
        mask[8:24, 8:24] = 1
        Image.fromarray(mask).save(root / "masks" / f"extra{index}.png")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = _verify(root / "images", root / "protected", "--masks", root / "masks", "--probe",
                         "--probe-epochs", "1", "--probe-height", "32")
    assert result.exit_code == 0, result.output
    assert "probe: unet, 1 epochs at 32x32 px, 4 training / 2 held-out images" in result.stdout
    assert "clean-trained victim      IoU" in result.stdout and "drop" in result.stdout
    assert "only 4 training / 2 held-out images" in result.stdout
