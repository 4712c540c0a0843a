"""``unseg protect`` end to end: outputs, manifest, resume, crash safety, errors, API parity."""

import json
import os
import signal
import stat
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from unseg.cli.main import app
from unseg.data.images import read_image, write_image
from unseg.models import GeneratorConfig, build_generator, load_model, save_model
from unseg.protection import Protector

RUNNER = CliRunner()


@pytest.fixture(scope="module")
def tiny(tiny_generator_path) -> str:
    return str(tiny_generator_path)


def _rgb(height, width, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _dataset(root: Path) -> tuple[Path, Path]:
    images, masks = root / "images", root / "masks"
    (images / "sub").mkdir(parents=True)
    masks.mkdir()
    Image.fromarray(_rgb(37, 53, 1)).save(images / "a.png")
    Image.fromarray(_rgb(20, 30, 2)).save(images / "sub" / "b.png")
    labels = np.zeros((37, 53), np.uint8)
    labels[5:20, 10:40] = 2
    labels[30:, :] = 255
    Image.fromarray(labels).save(masks / "a.png")
    (masks / "sub").mkdir()
    Image.fromarray(np.ones((20, 30), np.uint8)).save(masks / "sub" / "b.png")
    return images, masks


def _run(*args):
    return RUNNER.invoke(app, ["protect", *map(str, args)])


def _manifest(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def test_folder_protect_matches_api_and_resumes(tmp_path, tiny):
    images, masks = _dataset(tmp_path)
    out = tmp_path / "out"
    result = _run(images, out, "--masks", masks, "--ignore-index", "255", "--generator", tiny, "--batch-size", "2")
    assert result.exit_code == 0, result.output
    assert "2 protected, 0 skipped (already done), 0 failed" in result.stdout
    assert "UNTRAINED" in result.stderr
    records = {record["source"]: record for record in _manifest(out)}
    assert records["a.png"]["linf_inside"] <= 8 and records["a.png"]["linf_outside"] <= 2
    assert records["a.png"]["epsilon"] == {"fraction": 8 / 255, "levels": 8}
    assert records["sub/b.png"]["generator"] == {"generator": tiny, "trained": False, "saturate": True,
                                                 "fit": "square"}  # the default fit

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        protector = Protector.load(tiny)
    labels = np.asarray(Image.open(masks / "a.png"))
    api = protector.protect(images / "a.png", mask=(labels != 0) & (labels != 255))
    write_image(tmp_path / "api.png", api.pixels, api.alpha)
    assert (tmp_path / "api.png").read_bytes() == (out / "a.png").read_bytes()

    before = {name: (out / name).read_bytes() for name in ("a.png", "sub/b.png")}
    again = _run(images, out, "--masks", masks, "--ignore-index", "255", "--generator", tiny)
    assert again.exit_code == 0 and "0 protected, 2 skipped" in again.stdout
    assert len(_manifest(out)) == 2
    assert all((out / name).read_bytes() == data for name, data in before.items())


def test_fit_flag_squashes_into_the_generator_input_and_is_recorded(tmp_path, tiny):
    images, masks = _dataset(tmp_path)
    outputs = {}
    for fit in ("letterbox", "square"):
        out = tmp_path / fit
        result = _run(images, out, "--masks", masks, "--ignore-index", "255", "--generator", tiny, "--fit", fit)
        assert result.exit_code == 0, result.output
        record = {r["source"]: r for r in _manifest(out)}["a.png"]
        assert record["generator"]["fit"] == fit
        assert record["linf_inside"] <= 8 and record["linf_outside"] <= 2
        outputs[fit] = read_image(out / "a.png").pixels
    assert not np.array_equal(outputs["letterbox"], outputs["square"])  # a 37 x 53 image: the two fits differ
    bad = _run(images, tmp_path / "bad", "--masks", masks, "--generator", tiny, "--fit", "crop")
    assert bad.exit_code == 2 and "fit must be one of letterbox, square" in bad.output
    assert not (tmp_path / "bad" / "a.png").exists()


def test_raw_noise_flag_keeps_the_generator_output(tmp_path, tiny):
    images, masks = _dataset(tmp_path)
    for flags, saturated in (([], True), (["--raw-noise"], False)):
        out = tmp_path / ("raw" if flags else "saturated")
        result = _run(images, out, "--masks", masks, "--ignore-index", "255", "--generator", tiny, *flags)
        assert result.exit_code == 0, result.output
        record = {r["source"]: r for r in _manifest(out)}["a.png"]
        assert record["generator"]["saturate"] is saturated
        change = np.abs(read_image(out / "a.png").pixels.astype(int) - _rgb(37, 53, 1).astype(int))
        labels = np.asarray(Image.open(masks / "a.png"))
        inside = change[(labels == 2)]
        # saturated: every object pixel moves by the full 8 levels unless clipped at 0/255
        full = (inside == 8).mean()
        assert (full > 0.9) if saturated else (full < 0.5), full


def test_refine_flag_refines_with_the_given_segmenter_and_the_manifest_records_it(tmp_path, tiny, tiny_sam):
    from unseg.models import InteractiveSegmenter, SurrogateConfig

    images, masks = _dataset(tmp_path)
    segmenter = save_model(tmp_path / "segmenter.safetensors", InteractiveSegmenter(SurrogateConfig(sam=tiny_sam)))
    plain, refined = tmp_path / "plain", tmp_path / "refined"
    common = [images, "--masks", masks, "--ignore-index", "255", "--generator", tiny]
    assert _run(common[0], plain, *common[1:]).exit_code == 0
    result = _run(common[0], refined, *common[1:], "--refine", "--refine-segmenter", segmenter, "--refine-steps", "2")
    assert result.exit_code == 0, result.output
    record = {r["source"]: r for r in _manifest(refined)}["a.png"]
    assert record["generator"]["refine"]["steps"] == 2 and record["generator"]["refine"]["share"] == 0.5
    assert "refine" not in {r["source"]: r for r in _manifest(plain)}["a.png"]["generator"]
    before, after = (read_image(out / "a.png").pixels.astype(int) for out in (plain, refined))
    assert not np.array_equal(before, after)
    assert np.abs(after - _rgb(37, 53, 1).astype(int)).max() <= 8
    missing = _run(common[0], tmp_path / "x", *common[1:], "--refine", "--refine-segmenter", tmp_path / "none.safetensors")
    assert missing.exit_code == 2 and "refinement segmenter not found" in missing.output
    full = _run(common[0], tmp_path / "full", *common[1:], "--refine", "--refine-segmenter", segmenter,
                "--refine-steps", "2", "--refine-share", "1", "--refine-views", "square", "--refine-grid", "0.5")
    assert full.exit_code == 0, full.output
    recorded = {r["source"]: r for r in _manifest(tmp_path / "full")}["a.png"]["generator"]["refine"]
    assert (recorded["share"], recorded["views"], recorded["grid"]) == (1.0, ["square"], 0.5)
    views = _run(common[0], tmp_path / "v", *common[1:], "--refine", "--refine-segmenter", segmenter,
                 "--refine-views", "square,stretch")
    assert views.exit_code == 2 and "views must be distinct names from letterbox, square" in views.output
    bad = _run(common[0], tmp_path / "y", *common[1:], "--refine", "--refine-segmenter", segmenter, "--refine-share", "1.5")
    assert bad.exit_code == 2 and "share must be in (0, 1]" in bad.output


class SimulatedCrash(RuntimeError):
    pass


def test_crash_mid_write_leaves_no_partial_file_and_rerun_completes(tmp_path, tiny, monkeypatch):
    images, masks = _dataset(tmp_path)
    out = tmp_path / "out"
    real_save = Image.Image.save

    def partial_save(self, fp, *args, **kwargs):
        Path(fp).write_bytes(b"\x89PNG half")
        raise SimulatedCrash("power cut")

    monkeypatch.setattr(Image.Image, "save", partial_save)
    crashed = _run(images, out, "--masks", masks, "--generator", tiny)
    assert isinstance(crashed.exception, SimulatedCrash)
    assert not [path for path in out.rglob("*.png")] and not list(out.rglob(".*"))
    monkeypatch.setattr(Image.Image, "save", real_save)
    with (out / "manifest.jsonl").open("a") as handle:
        handle.write('{"source": "a.png", "out')  # a line cut short by the crash
    rerun = _run(images, out, "--masks", masks, "--generator", tiny)
    assert rerun.exit_code == 0 and "2 protected" in rerun.stdout
    assert len(_manifest(out)) == 2 and read_image(out / "a.png").pixels.shape == (37, 53, 3)


KILLED_WRITER = """
import sys, time
from pathlib import Path
from PIL import Image
from unseg.cli.main import app

real_save = Image.Image.save

def half_save(self, fp, *args, **kwargs):  # write half of the real file, then wait to be killed
    real_save(self, fp, *args, **kwargs)
    data = Path(fp).read_bytes()
    with open(fp, "wb") as handle:
        handle.write(data[: len(data) // 2])
    print("MID-WRITE", flush=True)
    time.sleep(120)

Image.Image.save = half_save
app(sys.argv[1:])
"""


def test_kill_mid_write_leaves_no_png_and_the_rerun_removes_the_leftover(tmp_path, tiny):
    images, masks = _dataset(tmp_path)
    out = tmp_path / "out"
    script = tmp_path / "killed_writer.py"
    script.write_text(KILLED_WRITER)
    child = subprocess.Popen([sys.executable, str(script), "protect", str(images), str(out), "--masks", str(masks),
                              "--generator", tiny], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert "MID-WRITE" in child.stdout.readline()  # blocks until the child is inside a write (or two)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL
    leftovers = [path for path in out.rglob("*") if path.is_file() and path.name != "manifest.jsonl"]
    assert leftovers and all(path.name.startswith(".") and path.suffix == ".partial" for path in leftovers), leftovers
    assert not list(out.rglob("*.png"))  # nothing a *.png glob could mistake for an output
    rerun = _run(images, out, "--masks", masks, "--generator", tiny)
    assert rerun.exit_code == 0 and "2 protected" in rerun.stdout
    assert sorted(path.relative_to(out).as_posix() for path in out.rglob("*") if path.is_file()) == [
        "a.png", "manifest.jsonl", "sub/b.png"]
    assert all(read_image(path).pixels.size for path in out.rglob("*.png"))


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_outputs_get_the_usual_mode_under_the_umask(tmp_path, tiny, tiny_sam, umask):
    images, masks = _dataset(tmp_path)
    out = tmp_path / "out"
    previous = os.umask(umask)
    try:
        result = _run(images, out, "--masks", masks, "--generator", tiny)
        checkpoint = save_model(tmp_path / "ckpt" / "g.safetensors", build_generator(GeneratorConfig(sam=tiny_sam)))
        with open(tmp_path / "plain.txt", "w") as handle:  # what open() gives: the reference
            handle.write("x")
    finally:
        os.umask(previous)
    assert result.exit_code == 0, result.output
    expected = 0o666 & ~umask
    assert stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode) == expected
    for path in (out / "a.png", out / "sub" / "b.png", out / "manifest.jsonl", checkpoint):
        assert stat.S_IMODE(path.stat().st_mode) == expected, (path, oct(path.stat().st_mode))


def _manifest_lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines() if line.strip()]


def test_reruns_keep_one_manifest_record_per_image(tmp_path, tiny):
    images, masks = _dataset(tmp_path)
    (images / "corrupt.png").write_bytes(b"not an image at all")
    Image.fromarray(_rgb(12, 12)).save(images / "nomask.png")
    out = tmp_path / "out"
    first = _run(images, out, "--masks", masks, "--generator", tiny)
    assert first.exit_code == 1 and "2 protected, 0 skipped (already done), 2 failed" in first.stdout
    assert len(_manifest_lines(out)) == 4
    for _ in range(2):  # the failures are retried and fail again: still one line each
        again = _run(images, out, "--masks", masks, "--generator", tiny)
        assert again.exit_code == 1 and "0 protected, 2 skipped (already done), 2 failed" in again.stdout
        assert len(_manifest_lines(out)) == 4
    Image.fromarray(np.ones((12, 12), np.uint8)).save(masks / "nomask.png")  # the user fixes one input
    fixed = _run(images, out, "--masks", masks, "--generator", tiny)
    assert "1 protected, 2 skipped (already done), 1 failed" in fixed.stdout
    records = _manifest_lines(out)
    assert sorted(r["output"] for r in records) == ["a.png", "corrupt.png", "nomask.png", "sub/b.png"]
    assert ["error" in r for r in records if r["output"] == "nomask.png"] == [False]  # the success replaced the error
    redo = _run(images, out, "--masks", masks, "--generator", tiny, "--no-resume")
    assert "3 protected, 0 skipped (already done), 1 failed" in redo.stdout
    assert len(_manifest_lines(out)) == 4 and sum("error" in r for r in _manifest_lines(out)) == 1


def test_bad_items_are_reported_and_the_rest_processed(tmp_path, tiny):
    images, masks = _dataset(tmp_path)
    (images / "corrupt.png").write_bytes(b"not an image at all")
    Image.fromarray(_rgb(12, 12)).save(images / "nomask.png")
    Image.fromarray(_rgb(9, 8)).save(images / "small.png")
    Image.fromarray(np.ones((10, 10), np.uint8)).save(masks / "small.png")
    Image.fromarray(np.ones((10, 10), np.uint8)).save(masks / "corrupt.png")
    out = tmp_path / "out"
    result = _run(images, out, "--masks", masks, "--generator", tiny)
    assert result.exit_code == 1
    assert "2 protected, 0 skipped (already done), 3 failed" in result.stdout
    assert "no mask for nomask" in result.stderr
    assert "mask 10x10 does not match image 8x9" in result.stderr
    assert "corrupt.png" in result.stderr and "cannot read" in result.stderr
    assert (out / "a.png").is_file() and not (out / "nomask.png").exists()
    assert sum("error" in record for record in _manifest(out)) == 3


def test_bad_command_lines_exit_with_code_2(tmp_path, tiny):
    images, masks = _dataset(tmp_path)
    out = tmp_path / "out"
    (tmp_path / "bad.json").write_text("{broken")
    cases = {
        "images folder not found": [tmp_path / "nope", out],
        "at most one of": [images, out, "--masks", masks, "--coco", tmp_path / "c.json"],
        "unknown class 'car'": [images, out, "--masks", masks, "--classes", "car"],
        "bad prompts file": [images, out, "--prompts", tmp_path / "bad.json"],
        "masks folder not found": [images, out, "--masks", tmp_path / "nomasks"],
        "neither a preset": [images, out, "--generator", "nonexistent.safetensors"],
        "--epsilon-bg": [images, out, "--epsilon", "2", "--epsilon-bg", "4"],
    }
    for message, args in cases.items():
        result = _run(*args, *(["--generator", tiny] if "--generator" not in args else []))
        assert result.exit_code == 2, (message, result.output)
        assert message in result.stderr, (message, result.stderr)
    assert not out.exists()


def test_formats_coco_prompts_exif_and_jpeg(tmp_path, tiny):
    images = tmp_path / "images"
    images.mkdir()
    gray16 = np.random.default_rng(0).integers(0, 65536, (21, 33), dtype=np.uint16)
    Image.fromarray(gray16).save(images / "gray16.png")
    rgba = np.dstack([_rgb(16, 24), np.arange(16 * 24, dtype=np.uint8).reshape(16, 24)])
    Image.fromarray(rgba, "RGBA").save(images / "rgba.png")
    raw = np.full((20, 40, 3), 30, np.uint8)
    raw[:, 20:] = 220  # stored dark left / bright right: upright it is dark top / bright bottom
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to view
    Image.fromarray(raw).save(images / "rotated.jpg", exif=exif, quality=95)
    coco = {"images": [{"id": 1, "file_name": "rgba.png", "height": 16, "width": 24}],
            "categories": [{"id": 1, "name": "thing"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": 20,
                             "bbox": [1, 1, 10, 10], "segmentation": [[1, 1, 11, 1, 11, 11, 1, 11]]}]}
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    out = tmp_path / "out"
    result = _run(images, out, "--coco", tmp_path / "coco.json", "--classes", "thing", "--generator", tiny)
    assert result.exit_code == 0, result.output

    protected16 = Image.open(out / "gray16.png")
    assert protected16.mode.startswith("I") and np.asarray(protected16).shape == (21, 33)
    diff16 = np.abs(np.asarray(protected16).astype(int) - gray16)
    assert 0 < diff16.max() <= 514  # background only: 2/255 of 65535
    protected_rgba = np.asarray(Image.open(out / "rgba.png"))
    assert protected_rgba.shape == (16, 24, 4) and np.array_equal(protected_rgba[..., 3], rgba[..., 3])
    upright = read_image(images / "rotated.jpg").pixels
    protected_rot = np.asarray(Image.open(out / "rotated.png"))
    assert protected_rot.shape == (40, 20, 3) == upright.shape
    assert np.abs(protected_rot.astype(int) - upright).max() <= 2
    assert protected_rot[:20].mean() < 40 and protected_rot[20:].mean() > 210
    records = {record["source"]: record for record in _manifest(out)}
    assert records["rgba.png"]["num_objects"] == 1 and records["gray16.png"]["num_objects"] == 0

    (tmp_path / "boxes.csv").write_text("image,x0,y0,x1,y1\nrgba.png,2,2,12,12\n")
    jpeg_out = tmp_path / "jpeg"
    result = _run(images, jpeg_out, "--prompts", tmp_path / "boxes.csv", "--jpeg-quality", "90",
                  "--generator", tiny)
    assert "JPEG output re-quantises" in result.stderr
    assert (jpeg_out / "rgba.jpg").is_file() and (jpeg_out / "rotated.jpg").is_file()
    assert result.exit_code == 1 and "gray16.png: 16-bit image cannot be written as JPEG" in result.stderr
    assert not (jpeg_out / "gray16.jpg").exists()


def test_demo_writes_inputs_protected_images_and_figure(tmp_path, tiny):
    result = RUNNER.invoke(app, ["demo", str(tmp_path), "--generator", tiny])
    assert result.exit_code == 0, result.output
    prompts = json.loads((tmp_path / "prompts.json").read_text())
    assert sorted(prompts) == ["astronaut.png", "chelsea.png", "coffee.png"]
    records = _manifest(tmp_path / "protected")
    assert len(records) == 3 and all(r["prompt"] == "box" and r["linf_outside"] <= 2 for r in records)
    clean = read_image(tmp_path / "input" / "coffee.png").pixels
    assert read_image(tmp_path / "protected" / "coffee.png").pixels.shape == clean.shape == (400, 600, 3)
    assert Image.open(tmp_path / "side_by_side.png").size[0] > 600


def test_the_generators_stored_budget_applies_unless_an_option_overrides_it(tmp_path, tiny):
    generator, _ = load_model(tiny)
    stored = save_model(tmp_path / "stored.safetensors", generator,
                        {"trained": False, "recommended_epsilon": 4 / 255, "recommended_epsilon_bg": 1 / 255})
    images, masks = _dataset(tmp_path)
    levels = {}
    for name, extra in {"stored": [], "epsilon": ["--epsilon", "6"], "both": ["--epsilon", "8", "--epsilon-bg", "2"]
                        }.items():
        out = tmp_path / name
        result = _run(images, out, "--masks", masks, "--ignore-index", "255", "--generator", stored, *extra)
        assert result.exit_code == 0, result.output
        record = next(r for r in _manifest(out) if r["source"] == "a.png")
        levels[name] = (record["epsilon"]["levels"], record["epsilon_bg"]["levels"])
        assert record["linf_inside"] == levels[name][0] and record["linf_outside"] <= levels[name][1]
    assert levels == {"stored": (4, 1), "epsilon": (6, 1), "both": (8, 2)}  # a missing option keeps the stored value
    help_text = " ".join(_run("--help").output.split())
    assert "stored protection budget" in help_text and "epsilon.protect" in help_text


@pytest.mark.parametrize("in_flight", [None, 1000])  # default cap: batches overlap; tiny cap: one at a time
def test_worker_threads_change_nothing_but_the_speed(tmp_path, tiny, monkeypatch, in_flight):
    from unseg.data.sources import plain_source
    from unseg.protection import pipeline, protect_dataset

    if in_flight is not None:
        monkeypatch.setattr(pipeline, "IN_FLIGHT_PIXELS", in_flight)
    images = tmp_path / "images"
    images.mkdir()
    for index in range(7):
        Image.fromarray(_rgb(20 + index, 30, index)).save(images / f"{index}.png")
    (images / "3b.png").write_bytes(b"not a png")  # a failed load between good ones
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        protector = Protector.load(tiny, batch_size=2)
    outputs = {}
    for workers in (0, 3):
        out = tmp_path / f"out{workers}"
        summary = protect_dataset(plain_source(images), out, protector, progress=False, workers=workers)
        assert (summary.protected, summary.failed) == (7, 1)
        outputs[workers] = ((out / "manifest.jsonl").read_text(),
                            {p.name: p.read_bytes() for p in sorted(out.glob("*.png"))})
    assert outputs[0] == outputs[3]  # same files, same manifest lines in the same order
    assert '"source": "3b.png"' in outputs[0][0].splitlines()[4]  # records in item order


def test_keyed_generator_keys_objects_by_class_and_the_manifest_records_it(tmp_path, tiny_sam):
    """With a keyed generator, ``--masks`` keys every class by its id (``--keying instance``: 1, 2, ...)
    and each manifest record says how; two classes side by side get different textures."""
    torch.manual_seed(0)
    keyed = tmp_path / "keyed.safetensors"
    save_model(keyed, build_generator(GeneratorConfig(sam=tiny_sam, noise_upscale=-1, num_codes=6, code_cells=16,
                                                      code_tile=2)), {"trained": False})
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir(), masks.mkdir()
    pixels = np.full((32, 64, 3), 128, np.uint8)
    Image.fromarray(pixels).save(images / "a.png")
    labels = np.zeros((32, 64), np.uint8)
    labels[:, :32], labels[:, 32:] = 1, 2
    Image.fromarray(labels).save(masks / "a.png")
    for keying, keys in (("class", [1, 2]), ("instance", [1, 2])):
        out = tmp_path / keying
        result = _run(images, out, "--masks", masks, "--generator", keyed, "--keying", keying)
        assert result.exit_code == 0, result.output
        record = _manifest(out)[0]
        assert (record["keyed"], record["keying"], record["keys"]) == (True, keying, keys)
        change = np.asarray(Image.open(out / "a.png")).astype(int) - 128
        assert (np.abs(change) == 8).all()  # every pixel is on an object: the full ε
        assert (change[:, :32] != change[:, 32:]).mean() > 0.3  # class 1 and class 2 carry different codes
    bad = _run(images, tmp_path / "bad", "--masks", masks, "--generator", keyed, "--keying", "colour")
    assert bad.exit_code == 2 and "keying must be" in bad.output
