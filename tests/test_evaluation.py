"""The evaluation protocol on a tiny generated dataset: results, report, resume, CLI, benchmark script.

One module-scoped run (1 victim, clean + unseg + random, 1 epoch at 32 px, 4 training images)
is shared by most tests; tests that change a run work on a copy of its folder. Torch runs on
one thread (``one_torch_thread``): these networks are so small that a second thread only adds
overhead.
"""

import importlib.util
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors.torch import load_file, safe_open, save_file
from typer.testing import CliRunner

from evaluation_helpers import TOY_SPEC, write_toy_folder
from unseg.budget import Budget
from unseg.cli.main import app
from unseg.data.images import LoadedImage, read_image
from unseg.data.prompts import ImagePrompt
from unseg.data.segmentation import CAMVID, KVASIR_SEG, SegmentationFolder
from unseg.evaluation import PRESETS, EvaluationConfig, plan_cells, preset_config, run_evaluation, write_report
from unseg.evaluation import protocol
from unseg.evaluation.methods import generator_identity

pytestmark = pytest.mark.usefixtures("one_torch_thread")

REPO = Path(__file__).resolve().parents[1]
RUNNER = CliRunner()
METHODS = ("clean", "unseg", "random")


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_generator_path):
    """(config, out folder, results) of one finished tiny evaluation with its report written."""
    root = tmp_path_factory.mktemp("evaluation")
    write_toy_folder(root / "data", train=5, test=2, spec=TOY_SPEC)
    generator = tiny_generator_path
    config = EvaluationConfig(data_root=str(root / "data"), datasets=("toy",), victims=("unet",), methods=METHODS,
                              defences=("none",), epochs=1, batch_size=2, image_height=32, train_images=4,
                              test_images=2, generator=str(generator), progress=False)
    out = root / "out"
    data = run_evaluation(config, out)
    write_report(data, out)
    return config, out, data


def _cli_args(config: EvaluationConfig, out: Path, **changes) -> list[str]:
    """``unseg evaluate`` arguments reproducing ``config`` (with ``changes``)."""
    values = {"data-root": config.data_root, "datasets": ",".join(config.datasets), "victims": ",".join(config.victims),
              "methods": ",".join(config.methods), "epochs": config.epochs, "batch-size": config.batch_size,
              "image-height": config.image_height, "train-images": config.train_images, "test-images": config.test_images,
              "generator": config.generator, **changes}
    return ["evaluate", "--out", str(out), "--no-progress", *[str(a) for k, v in values.items() for a in (f"--{k}", v)]]


def _plain(output: str) -> str:
    """CLI output without rich's box drawing and line wrapping."""
    return " ".join(re.sub("[│╭╮╰╯─]", " ", output).split())


class CallCounter:
    """Wraps a function and counts its calls."""

    def __init__(self, function):
        self.function, self.calls = function, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.function(*args, **kwargs)


@pytest.fixture
def count_training(monkeypatch) -> CallCounter:
    counter = CallCounter(protocol.train_victim)
    monkeypatch.setattr(protocol, "train_victim", counter)
    return counter


def test_dataset_spec_comes_from_dataset_json_or_the_known_name(tmp_path):
    toy = SegmentationFolder(write_toy_folder(tmp_path, "toy", train=1, test=1, spec=TOY_SPEC))
    assert (toy.spec.name, toy.spec.num_classes, toy.spec.ignore_index) == ("toy", 3, 255)
    assert SegmentationFolder(write_toy_folder(tmp_path, "camvid", train=1, test=1, spec=None)).spec == CAMVID
    with pytest.raises(ValueError, match="dataset.json"):
        SegmentationFolder(write_toy_folder(tmp_path, "unnamed", train=1, test=1, spec=None))
    with pytest.raises(FileNotFoundError, match="split file"):
        toy.stems("val")
    with pytest.raises(FileNotFoundError, match="images/ and masks/"):
        SegmentationFolder(tmp_path / "missing")


def test_real_folders_match_their_specs(shared_data):
    for spec in (CAMVID, KVASIR_SEG):
        folder = SegmentationFolder(shared_data / spec.name)
        assert folder.spec == spec
        stem = folder.stems(spec.test_split)[0]
        mask = folder.read_mask(stem)
        assert mask.shape == folder.read_image(stem).rgb8().shape[:2]
        allowed = set(range(spec.num_classes)) | ({spec.ignore_index} if spec.ignore_index is not None else set())
        assert set(np.unique(mask).tolist()) <= allowed
        assert not folder.spec.object_region(mask)[mask == (spec.ignore_index if spec.ignore_index is not None else 0)].any()


def test_results_hold_one_cell_per_grid_point(run):
    config, out, data = run
    saved = json.loads((out / "results.json").read_text())
    assert saved["cells"].keys() == {cell.key for cell in plan_cells(config)} == {f"toy|unet|{m}|none" for m in METHODS}
    assert saved["config"] == json.loads(json.dumps(config.to_dict()))
    assert {"torch", "segmentation_models_pytorch", "unseg"} <= saved["versions"].keys()
    for key, cell in saved["cells"].items():
        assert (cell["dataset"], cell["victim"], cell["defence"]) == ("toy", "unet", "none")
        assert cell["metric"] == "miou" and cell["value"] == cell["final"]["miou"]
        assert 0 <= cell["value"] <= 100
        assert [h["epoch"] for h in cell["history"]] == [1]
        assert (cell["train_images"], cell["test_images"]) == (4, 2)
        assert cell["seconds"] > 0
        prediction = np.load(out / "predictions" / (key.replace("|", "__") + ".npy"))
        assert prediction.shape == (2, 32, 64)  # 2 test images at 32 px, width from aspect 1.5


def test_protected_images_obey_the_budget_and_the_cost_is_recorded(run):
    config, out, data = run
    assert data["protection"].keys() == {"toy|unseg", "toy|random"}
    unseg = data["protection"]["toy|unseg"]
    assert unseg["generator"] == config.generator and unseg["trained"] is False
    folder = SegmentationFolder(Path(config.data_root) / "toy")
    for method in ("unseg", "random"):
        info = data["protection"][f"toy|{method}"]
        assert info["images"] == 4 and info["seconds_per_image"] > 0
        assert info["max_linf_inside"] <= 8 and info["max_linf_outside"] <= 2
        cached = sorted((out / "protected").glob(f"{method}_toy_eps8-2/*.png"))
        assert len(cached) == 4
        for path in cached:
            original = folder.read_image(path.stem).rgb8().astype(int)
            change = np.abs(read_image(path).rgb8().astype(int) - original).max(axis=2)
            region = folder.spec.object_region(folder.read_mask(path.stem))
            assert change[region].max() <= 8 and change[~region].max() <= 2 and change.max() > 0


def test_report_puts_the_clean_metric_beside_each_method(run):
    _, out, data = run
    report = (out / "report.md").read_text()
    value = {m: data["cells"][f"toy|unet|{m}|none"]["value"] for m in METHODS}
    shares = {m: f"{value[m]:.1f} ({value[m] / value['clean']:.2f})" for m in ("unseg", "random")}
    assert "| victim | defence | no-image baseline | clean-trained | unseg | random |" in report
    # each method as "score (score / clean)"; the no-image baseline of a semantic victim is the layout prior
    prior = data["priors"]["toy"][data["cells"]["toy|unet|clean|none"]["metric"]]
    assert f"| unet | none | {prior:.1f} | {value['clean']:.1f} | {shares['unseg']} | {shares['random']} |" in report
    # and the share of the clean victim's gain over that baseline each method keeps
    kept = [f"{(value[m] - prior) / (value['clean'] - prior):.2f}" if value["clean"] > prior else "–" for m in ("unseg", "random")]
    assert f"| unet | {prior:.1f} | {kept[0]} | {kept[1]} |" in report
    assert "| mean PSNR (dB) |" in report
    assert "UNTRAINED generator" in report
    for name in ("curves_toy.png", "bars.png", "grid_toy.png"):
        assert f"]({name})" in report
        with Image.open(out / name) as figure:
            assert figure.size[0] > 100 and figure.size[1] > 100


def test_report_without_the_protected_cache_keeps_the_grid_it_had(run, tmp_path, capsys):
    """A results folder copied without protected/ (as committed benchmarks are) must not draw clean
    images as "protected": the grid is kept from before, or left out when there is none."""
    _, out, data = run
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "grid_toy.png").write_bytes((out / "grid_toy.png").read_bytes())
    write_report(data, kept)
    assert (kept / "grid_toy.png").read_bytes() == (out / "grid_toy.png").read_bytes()
    assert "](grid_toy.png)" in (kept / "report.md").read_text()
    assert "image grid kept from before: no protected image" in capsys.readouterr().out
    bare = tmp_path / "bare"
    bare.mkdir()
    write_report(data, bare)
    assert not (bare / "grid_toy.png").exists() and "grid_toy.png" not in (bare / "report.md").read_text()


def test_image_grid_leaves_out_a_method_without_protected_images(run, tmp_path):
    """Merged runs: a method that did not run on a dataset gets no row, the others still do."""
    from unseg.evaluation.report import image_grid

    _, out, data = run
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    shutil.rmtree(next((copy / "protected").glob("random_toy_*")))
    with Image.open(out / "grid_toy.png") as both, Image.open(image_grid(data, copy, "toy")) as one:
        assert one.size[0] == both.size[0] and one.size[1] < both.size[1] * 0.75  # two rows -> one
    shutil.rmtree(next((copy / "protected").glob("unseg_toy_*")))
    with pytest.raises(FileNotFoundError, match="no protected image"):
        image_grid(data, copy, "toy")


def test_rerun_skips_finished_cells_and_reuses_protection(run, count_training, tmp_path):
    config, out, _ = run
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    before = (copy / "results.json").read_text()
    cached = {p: p.stat().st_mtime_ns for p in (copy / "protected").rglob("*.png")}
    run_evaluation(config, copy)
    assert count_training.calls == 0
    assert json.loads((copy / "results.json").read_text())["cells"] == json.loads(before)["cells"]
    assert {p: p.stat().st_mtime_ns for p in (copy / "protected").rglob("*.png")} == cached
    # growing the grid (a grid field) only runs the new cell
    grown = run_evaluation(config.replace(methods=(*METHODS, "sign")), copy)
    assert count_training.calls == 1
    assert set(grown["cells"]) == {f"toy|unet|{m}|none" for m in (*METHODS, "sign")}
    assert {k: v for k, v in grown["cells"].items() if "sign" not in k} == json.loads(before)["cells"]


@pytest.mark.parametrize("change", [{"epochs": 2}, {"budget": Budget(4, 2)}, {"image_height": 64}])
def test_resume_with_another_schedule_or_budget_is_refused(run, change, count_training):
    config, out, _ = run
    before = (out / "results.json").read_text()
    with pytest.raises(ValueError, match=f"different schedule/budget.*{next(iter(change))}"):
        run_evaluation(config.replace(**change), out)
    assert (out / "results.json").read_text() == before and count_training.calls == 0


def test_resume_after_the_generator_changed_is_refused(run, tmp_path, count_training):
    config, out, _ = run
    recorded = json.loads((out / "results.json").read_text())["generators"]
    assert recorded == {"unseg": generator_identity("unseg", config.generator)} and recorded["unseg"].startswith("sha1:")
    changed = tmp_path / "changed.safetensors"
    state = {name: tensor + 1 for name, tensor in load_file(config.generator).items()}
    save_file(state, changed, metadata=safe_open(config.generator, "pt").metadata())
    assert generator_identity(f"unseg:{changed}", config.generator) != recorded["unseg"]
    assert generator_identity("random", config.generator) is None
    refined = generator_identity("unseg_refined", config.generator)  # the generator's, plus its segmenter and schedule
    assert "+refined:sha1:" in refined and refined.endswith("10x0.2@0.5:letterbox+square")
    full = generator_identity("unseg_refined_full", config.generator)  # the same, on the whole budget
    assert full == refined.replace("@0.5:", "@1:")
    assert recorded["unseg"].endswith("+saturated+fit:square")  # the default fit; older runs (letterbox) name none
    letterbox = generator_identity("unseg_letterbox", config.generator)
    assert letterbox + "+fit:square" == recorded["unseg"] == generator_identity("unseg_square", config.generator)
    assert refined.startswith(letterbox + "+refined:")  # the refinement methods keep the fit they were measured with
    squashed = generator_identity("unseg_refined_square", config.generator)  # fit, then the refinement's square view
    assert squashed == refined.replace("+refined:", "+fit:square+refined:").replace("letterbox+square", "square")
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    results = json.loads((copy / "results.json").read_text())
    results["generators"]["unseg"] = generator_identity(f"unseg:{changed}", config.generator)  # as if the file changed
    (copy / "results.json").write_text(json.dumps(results))
    with pytest.raises(ValueError, match="generator behind 'unseg' changed"):
        run_evaluation(config, copy)
    assert count_training.calls == 0


def test_cli_resumes_the_same_run_without_training(run, count_training):
    config, out, _ = run
    result = RUNNER.invoke(app, _cli_args(config, out))
    assert result.exit_code == 0, result.output
    assert "3 cells done" in result.output and count_training.calls == 0


def test_cli_refuses_a_changed_schedule_cleanly(run, count_training):
    config, out, _ = run
    result = RUNNER.invoke(app, _cli_args(config, out, epochs=3))
    assert result.exit_code == 2 and "different schedule/budget" in result.output
    assert count_training.calls == 0


def test_cli_quick_preset_with_overrides_runs(run, tmp_path):
    config, _, _ = run
    out = tmp_path / "quick"
    args = ["evaluate", "--quick", "--out", str(out), "--data-root", config.data_root, "--datasets", "toy",
            "--methods", "clean,random", "--epochs", "1", "--image-height", "32", "--train-images", "2",
            "--test-images", "1", "--batch-size", "2", "--no-amp", "--no-progress"]
    result = RUNNER.invoke(app, args)
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "results.json").read_text())
    assert saved["config"]["victims"] == ["unet"]  # from the quick preset
    assert (saved["config"]["epochs"], saved["config"]["train_images"], saved["config"]["amp"]) == (1, 2, False)
    assert set(saved["cells"]) == {"toy|unet|clean|none", "toy|unet|random|none"}
    assert (out / "report.md").is_file()


def test_cli_help_lists_the_options():
    result = RUNNER.invoke(app, ["evaluate", "--help"])
    assert result.exit_code == 0
    for option in ("--quick", "--preset", "--victims", "--methods", "--defences", "--data-root", "--victim-fit"):
        assert option in result.output


@pytest.mark.parametrize("option, value, message", [
    ("--victims", "resnet", "unknown victim"),
    ("--methods", "clean,noise", "unknown method"),
    ("--defences", "jpeg200", "JPEG quality"),
    ("--defences", "sharpen", "unknown defence"),
    ("--preset", "benchmark", "conflicts with --preset benchmark"),
    ("--image-height", "33", "multiple of 32"),
    ("--victim-fit", "crop", "victim_fit must be one of"),
    ("--datasets", "nowhere", "not a segmentation folder"),
    ("--methods", "clean,unseg:/nowhere/gen.safetensors", "generator checkpoint not found"),
])
def test_cli_bad_input_fails_before_any_work(run, tmp_path, option, value, message):
    config, _, _ = run
    out = tmp_path / "bad"
    args = ["evaluate", "--quick", "--out", str(out), "--data-root", config.data_root, "--datasets", "toy", option, value]
    result = RUNNER.invoke(app, args)
    assert result.exit_code != 0
    assert message in _plain(result.output)
    assert not out.exists()


def test_cli_unknown_preset_fails(tmp_path):
    result = RUNNER.invoke(app, ["evaluate", "--preset", "huge", "--out", str(tmp_path / "bad")])
    assert result.exit_code == 2 and "unknown preset" in result.output
    assert not (tmp_path / "bad").exists()


def test_cli_needs_an_out_folder():
    result = RUNNER.invoke(app, ["evaluate", "--quick"])
    assert result.exit_code == 2 and "--out" in result.output


def _benchmark_module(name: str = "evaluate_protection"):
    """A script of ``benchmarks/`` imported as a module."""
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_script_defaults_and_arguments():
    benchmark = _benchmark_module()
    args = benchmark.parse_args([])
    config = benchmark.build_config(args, benchmark.DEFAULT_DATA_ROOT)
    assert config.to_dict() == EvaluationConfig(data_root=str(benchmark.DEFAULT_DATA_ROOT),
                                                **PRESETS["benchmark"]).to_dict()
    assert len(config.victims) >= 3 and {"clean", "unseg", "random", "synper", "ar", "cuda", "em"} <= set(config.methods)
    assert benchmark.DEFAULT_OUT == REPO / "runs" / "benchmark"
    assert benchmark.DEFAULT_DATA_ROOT == REPO.parent / "shared" / "data"
    args = benchmark.parse_args(["--generator", "g.safetensors", "--out", "x", "--dry-run"])
    assert (args.generator, args.out, args.dry_run) == ("g.safetensors", Path("x"), True)
    for bad in (["--unknown"], ["--preset", "huge"]):
        with pytest.raises(SystemExit):
            benchmark.parse_args(bad)

def test_benchmark_preset_finds_its_real_data(shared_data):
    benchmark = _benchmark_module()
    config = benchmark.build_config(benchmark.parse_args([]), shared_data)
    for dataset in config.datasets:
        folder = SegmentationFolder(shared_data / dataset)
        train, test = folder.stems(folder.spec.train_split), folder.stems(folder.spec.test_split)
        assert config.train_limit(len(train)) == config.train_images <= len(train)
        assert config.test_images <= len(test)
        assert folder.files.image_path(train[0]).is_file() and folder.files.image_path(test[-1]).is_file()


def test_benchmark_script_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        _benchmark_module().parse_args(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "--dry-run" in text and "--data-root" in text and "--results-dir" in text


def test_benchmark_dry_run_writes_report_and_header(tmp_path):
    benchmark = _benchmark_module()
    out, results = tmp_path / "run", tmp_path / "results"
    assert benchmark.main(["--dry-run", "--generator", "small", "--out", str(out), "--results-dir", str(results)]) == results
    for name in ("report.md", "results.json", "bars.png", "README.md"):
        assert (results / name).is_file(), name
    header = (results / "README.md").read_text()
    assert "python benchmarks/evaluate_protection.py --dry-run --generator small --out" in header
    assert "DRY RUN" in header and "CPU run on" in header and "UNTRAINED" in header
    assert "| epochs | `1` |" in header
    saved = json.loads((results / "results.json").read_text())
    assert len(saved["cells"]) == 3 and (results / "report.md").read_text() == (out / "report.md").read_text()


def test_unseg_method_writes_what_the_protector_writes_with_the_budget_applied_once(tmp_path, tiny_generator_path):
    """The evaluation takes the protector's noise (``noise_batch``: no budget, no statistics) and
    bounds it once: the cached PNGs equal ``Protector.protect`` with each class region as an object."""
    from unseg.evaluation.methods import MethodOptions, class_regions, protect_split
    from unseg.protection import Protector

    folder = SegmentationFolder(write_toy_folder(tmp_path / "data", train=3, test=1))
    generator = str(tiny_generator_path)
    options = MethodOptions(budget=Budget(6, 1), generator=generator, batch_size=2)
    target, info = protect_split("unseg", folder, folder.stems("train"), tmp_path / "cache", options, progress=False)
    assert (info["epsilon_levels"], info["epsilon_bg_levels"]) == (6, 1)
    with pytest.warns(UserWarning, match="UNTRAINED"):
        protector = Protector.load(generator, budget=Budget(6, 1))
    for stem in folder.stems("train"):
        pixels, mask = folder.read_image(stem).rgb8(), folder.read_mask(stem)
        region = folder.spec.object_region(mask)
        masks, keys = class_regions(mask, region)
        prompt = ImagePrompt(objects=masks, keys=keys)  # each class region keyed by its class id
        expected = protector.protect_batch([LoadedImage(pixels)], [prompt])[0]
        assert np.array_equal(read_image(target / f"{stem}.png").pixels, expected.pixels), stem
        natives = protector.noise_batch([LoadedImage(pixels)], [prompt])
        assert np.array_equal(natives[0].region, region) and np.array_equal(natives[0].full(), expected.noise)


def test_a_gray_set_is_protected_as_gray_images_as_unseg_protect_does(tmp_path, tiny_generator_path):
    """Gray images get the noise in their own layout (one channel, saturated noise kept at the
    whole budget: ``perturb.to_gray``), bit for bit as ``Protector.protect`` writes them, not the
    colour noise of their RGB view; the unsaturated ``random`` noise gets its channel mean."""
    from unseg.evaluation.methods import MethodOptions, class_regions, protect_split
    from unseg.protection import Protector

    folder_path = write_toy_folder(tmp_path / "data", train=2, test=1)
    for path in (folder_path / "images").iterdir():
        Image.open(path).convert("L").save(path)
    folder = SegmentationFolder(folder_path)
    options = MethodOptions(budget=Budget(6, 1), generator=str(tiny_generator_path), batch_size=2)
    target, info = protect_split("unseg", folder, folder.stems("train"), tmp_path / "cache", options, progress=False)
    with pytest.warns(UserWarning, match="UNTRAINED"):
        protector = Protector.load(str(tiny_generator_path), budget=Budget(6, 1))
    for stem in folder.stems("train"):
        gray, mask = folder.read_image(stem).pixels, folder.read_mask(stem)
        masks, keys = class_regions(mask, folder.spec.object_region(mask))
        expected = protector.protect_batch([LoadedImage(gray)], [ImagePrompt(objects=masks, keys=keys)])[0]
        written = read_image(target / f"{stem}.png").pixels
        assert written.shape[-1] == 1 and np.array_equal(written, expected.pixels), stem
    random_target, _ = protect_split("random", folder, folder.stems("train"), tmp_path / "cache", options, progress=False)
    stem = folder.stems("train")[0]
    change = read_image(random_target / f"{stem}.png").pixels.astype(int) - folder.read_image(stem).pixels
    assert np.abs(change).max() <= 6 and len(np.unique(change)) > 3  # the mean of uniform noise: not only ±ε


def _assert_cached_as_protected_by(protector, target, folder) -> None:
    """The method's cached first training image is what ``protector`` makes of it, bit for bit
    (each class region its own object, keyed by class, as the evaluation prompts)."""
    from unseg.evaluation.methods import class_regions

    stem = folder.stems("train")[0]
    pixels, mask = folder.read_image(stem).rgb8(), folder.read_mask(stem)
    masks, keys = class_regions(mask, folder.spec.object_region(mask))
    expected = protector.protect_batch([LoadedImage(pixels)], [ImagePrompt(objects=masks, keys=keys)])[0]
    assert np.array_equal(read_image(target / f"{stem}.png").pixels, expected.pixels)


def test_unseg_refined_method_is_the_protector_with_the_shipped_refiner(tmp_path, tiny_generator_path):
    from unseg.evaluation.methods import MethodOptions, protect_split
    from unseg.protection import Protector
    from unseg.protection.refine import DEFAULT_SURROGATE, Refiner

    if not DEFAULT_SURROGATE.is_file():
        pytest.skip("no shipped refinement segmenter")
    folder = SegmentationFolder(write_toy_folder(tmp_path / "data", train=2, test=1))
    options = MethodOptions(generator=str(tiny_generator_path), batch_size=2)
    target, info = protect_split("unseg_refined", folder, folder.stems("train"), tmp_path / "cache", options,
                                 progress=False)
    assert info["refine"]["trained_on"]["dataset"] == "camvid" and info["refine"]["share"] == 0.5
    with pytest.warns(UserWarning, match="UNTRAINED"):
        protector = Protector.load(str(tiny_generator_path), refiner=Refiner.load(), fit="letterbox")
    _assert_cached_as_protected_by(protector, target, folder)


def test_unseg_square_method_is_the_protector_with_the_square_fit(tmp_path, tiny_generator_path):
    from unseg.evaluation.methods import MethodOptions, protect_split
    from unseg.protection import Protector

    folder = SegmentationFolder(write_toy_folder(tmp_path / "data", train=2, test=1))
    options = MethodOptions(generator=str(tiny_generator_path), batch_size=2)
    target, info = protect_split("unseg_square", folder, folder.stems("train"), tmp_path / "cache", options,
                                 progress=False)
    assert info["fit"] == "square"
    with pytest.warns(UserWarning, match="UNTRAINED"):
        protector = Protector.load(str(tiny_generator_path), fit="square")
    _assert_cached_as_protected_by(protector, target, folder)


def test_unseg_refined_full_method_is_the_refinement_on_the_whole_budget(tmp_path, tiny_generator_path):
    from unseg.evaluation.methods import MethodOptions, class_regions, protect_split
    from unseg.protection import Protector
    from unseg.protection.refine import DEFAULT_SURROGATE, RefineSchedule, Refiner

    if not DEFAULT_SURROGATE.is_file():
        pytest.skip("no shipped refinement segmenter")
    folder = SegmentationFolder(write_toy_folder(tmp_path / "data", train=2, test=1))
    options = MethodOptions(generator=str(tiny_generator_path), batch_size=2)
    stems = folder.stems("train")
    target, info = protect_split("unseg_refined_full", folder, stems, tmp_path / "cache", options, progress=False)
    half, _ = protect_split("unseg_refined", folder, stems, tmp_path / "cache", options, progress=False)
    assert info["refine"]["share"] == 1.0 and target != half
    for stem in stems:
        clean = folder.read_image(stem).rgb8().astype(int)
        full, halved = (read_image(t / f"{stem}.png").pixels.astype(int) for t in (target, half))
        assert not np.array_equal(full, halved)
        region = folder.spec.object_region(folder.read_mask(stem))
        assert np.abs(full - clean)[region].max() <= 8 and np.abs(full - clean)[~region].max() <= 2  # the budget holds
    with pytest.warns(UserWarning, match="UNTRAINED"):
        protector = Protector.load(str(tiny_generator_path), refiner=Refiner.load(schedule=RefineSchedule(share=1.0)),
                                   fit="letterbox")
    pixels, mask = folder.read_image(stems[0]).rgb8(), folder.read_mask(stems[0])
    masks, keys = class_regions(mask, folder.spec.object_region(mask))
    expected = protector.protect_batch([LoadedImage(pixels)], [ImagePrompt(objects=masks, keys=keys)])[0]
    assert np.array_equal(read_image(target / f"{stems[0]}.png").pixels, expected.pixels)


def test_every_preset_is_a_valid_config_and_gpu_is_the_main_grid():
    for name, values in PRESETS.items():
        config = preset_config(name)  # every method of every preset is known (check_method)
        assert config.to_dict()["epochs"] == values["epochs"]
    gpu = PRESETS["gpu"]
    assert (set(gpu["datasets"]), set(gpu["victims"])) == ({"camvid", "kvasir_seg"}, {"unet", "deeplabv3plus"})
    assert set(gpu["methods"]) == {"clean", "unseg", "pattern", "random"} and gpu["defences"] == ("none",)
    assert "train_images" not in gpu and "test_images" not in gpu and gpu["image_height"] == 256  # full splits
    assert gpu["device"] == PRESETS["gpu_full"]["device"] == "cuda" and gpu["amp"] and gpu["channels_last"]
    assert len(plan_cells(preset_config("gpu", methods=("clean", "unseg", "random")))) == 12  # + pattern: 16
    full = PRESETS["gpu_full"]
    assert set(full["victims"]) >= set(gpu["victims"]) and set(full["methods"]) >= set(gpu["methods"])


def test_kept_gain_is_the_share_above_the_no_image_baseline():
    from unseg.evaluation.report import kept_gain

    assert kept_gain(19.4, 35.2, 17.0) == "0.13"  # CamVid v8 UNet against the layout prior
    assert kept_gain(17.0, 35.2, 17.0) == "0.00" and kept_gain(35.2, 35.2, 17.0) == "1.00"
    assert kept_gain(0.7, 44.9, 1.5) == "-0.02"  # below the baseline: misled
    assert kept_gain(50.0, 10.0, 20.0) == "–" and kept_gain(None, 35.2, 17.0) == "–"  # clean below baseline / missing


def test_report_of_defence_cells_only_leaves_out_the_undefended_summaries(run, tmp_path):
    from unseg.evaluation.report import kept_gain_table

    _, out, data = run
    assert kept_gain_table(data, "toy")[2].startswith("| unet | ")
    cells = {key: cell for key, cell in data["cells"].items() if key != "toy|unet|clean|none"}
    assert kept_gain_table({**data, "cells": cells}, "toy") == []
    # a run of defence cells only (here: relabelled as jpeg75 cells): no share table, no empty bar chart
    defended = {key.replace("|none", "|jpeg75"): {**cell, "defence": "jpeg75"} for key, cell in data["cells"].items()}
    folder = tmp_path / "defended"
    folder.mkdir()
    (folder / "bars.png").write_bytes((out / "bars.png").read_bytes())  # left from an earlier run
    config = {**data["config"], "defences": ["jpeg75"]}
    report = write_report({**data, "config": config, "cells": defended}, folder).read_text()
    assert "| unet | jpeg75 |" in report and "Share of the clean" not in report and "Mean over victims" not in report
    assert "bars.png" not in report and not (folder / "bars.png").exists() and "](curves_toy.png)" in report


def test_merged_runs_give_one_report_with_every_cell(run, tmp_path):
    """Two one-method runs of one grid merge into the report a single run would write (also when one
    showed progress bars and the other not); runs of another schedule are refused."""
    config, out, data = run
    merge_results = _benchmark_module("merge_results")
    parts = []
    for method in ("clean", "unseg"):
        part = tmp_path / method
        (part / "predictions").mkdir(parents=True)
        cells = {k: c for k, c in data["cells"].items() if c["method"] == method}
        protection = {k: v for k, v in data["protection"].items() if k.endswith(f"|{method}")}
        (part / "results.json").write_text(json.dumps({**data, "config": {**data["config"], "methods": [method]},
                                                       "cells": cells, "protection": protection}))
        parts.append(part)
    merged_dir = tmp_path / "merged"
    merge_results.main([str(merged_dir), *map(str, parts)])
    merged = json.loads((merged_dir / "results.json").read_text())
    assert merged["config"]["methods"] == ["clean", "unseg"]
    assert set(merged["cells"]) == {k for k, c in data["cells"].items() if c["method"] in ("clean", "unseg")}
    assert merged["priors"] == json.loads(json.dumps(data["priors"]))
    assert "| victim | defence | no-image baseline | clean-trained | unseg |" in (merged_dir / "report.md").read_text()
    other = json.loads((parts[1] / "results.json").read_text())
    other["config"]["progress"] = not other["config"]["progress"]  # display only: still one grid
    (parts[1] / "results.json").write_text(json.dumps(other))
    merge_results.main([str(tmp_path / "shown_otherwise"), *map(str, parts)])
    other["config"]["epochs"] += 1
    (parts[1] / "results.json").write_text(json.dumps(other))
    with pytest.raises(ValueError, match="runs differ in epochs"):
        merge_results.main([str(tmp_path / "refused"), *map(str, parts)])


@pytest.mark.parametrize("kind", ["flat", "checker-8", "checker-1/4", "hybrid-1/4", "hybridr-1/4"])
def test_probe_noises_are_unit_and_flip_off_the_object(kind):
    """Every hand-made probe noise is ±1 in each channel and exactly negated off the object."""
    probe = _benchmark_module("noise_structure_probe")
    region = np.zeros((24, 32), bool)
    region[4:16, 6:20] = True
    noise = probe.fixed_noise(kind, region)
    assert noise.shape == (24, 32, 3) and set(np.unique(noise)) == {-1.0, 1.0}
    unflipped = np.where(region[..., None], noise, -noise)
    # one pattern over the whole image: the object's pixels continue into the background
    reference = probe.fixed_noise(kind, np.ones_like(region))
    np.testing.assert_array_equal(unflipped, reference)
    if kind.startswith("hybrid"):  # two channels the flat colour (+, −, +), one a texture
        textured = 1 if kind.startswith("hybrid-") else 0
        flat = [c for c in range(3) if c != textured]
        assert (reference[..., flat] == probe.COLOUR[flat]).all() and len(np.unique(reference[..., textured])) == 2


def test_probe_texture_period_native_or_relative():
    probe = _benchmark_module("noise_structure_probe")
    assert probe.texture_period("64", 100, 300) == 64
    assert probe.texture_period("1/24", 240, 480) == 20
    assert probe.texture_period("1/1000", 24, 32) == 2
    with pytest.raises(ValueError):
        probe.fixed_noise("stripes-4", np.ones((4, 4), bool))


def test_convergence_reads_the_last_two_epochs_of_the_clean_victim(run):
    from unseg.evaluation.report import convergence, convergence_table

    history = [{"epoch": e, "miou": v} for e, v in enumerate([20.0, 30.0, 34.0, 36.0, 35.5], start=1)]
    state = convergence(history, "miou")
    assert state["final"] == 35.5 and (state["best"], state["best_epoch"]) == (36.0, 4)
    assert state["recent_gain"] == 1.5 and state["rising"]  # 35.5 against epoch 3's 34.0
    assert not convergence(history[:4] + [{"epoch": 5, "miou": 35.0}], "miou")["rising"]  # +1.0: not above the bar
    assert convergence(history[:2], "miou")["recent_gain"] == 10.0  # two epochs: against the first
    dropped = convergence(history + [{"epoch": 6, "miou": 30.0}, {"epoch": 7, "miou": 29.0}], "miou")
    assert dropped["falling"] and not dropped["rising"] and dropped["best"] == 36.0  # 29.0 against epoch 5's 35.5
    assert not state["falling"] and not convergence(history[:4] + [{"epoch": 5, "miou": 33.0}], "miou")["falling"]  # -1.0
    assert convergence(history[:1], "miou") is None and convergence(history, "iou") is None
    _, out, data = run  # the tiny run: one epoch, so nothing to say and no table in the report
    assert convergence_table(data, "toy") == [] and "Did the clean-trained victims converge?" not in (out / "report.md").read_text()
    cell = data["cells"]["toy|unet|clean|none"]
    longer = {**data, "cells": {**data["cells"], "toy|unet|clean|none": {**cell, "history": [
        {"epoch": 1, cell["metric"]: 10.0}, {"epoch": 2, cell["metric"]: 10.5}]}}}
    assert convergence_table(longer, "toy")[2] == "| unet | 10.5 | 10.5 (epoch 2) | +0.5 | flat |"
    longer["cells"]["toy|unet|clean|none"]["history"][1][cell["metric"]] = 8.0
    assert convergence_table(longer, "toy")[2] == "| unet | 8.0 | 10.0 (epoch 1) | -2.0 | falling |"


def test_a_finished_run_reports_after_its_generator_file_is_gone(run, tmp_path):
    """A results.json read back (merged, committed, copied to another machine) needs no generator file."""
    _, out, data = run
    gone = str(tmp_path / "deleted" / "gen.safetensors")
    config = {**data["config"], "methods": [*data["config"]["methods"], f"unseg:{gone}"]}
    cell = {**data["cells"]["toy|unet|unseg|none"], "method": f"unseg:{gone}"}
    recorded = {**data, "config": config, "cells": {**data["cells"], f"toy|unet|unseg:{gone}|none": cell}}
    folder = tmp_path / "report"
    folder.mkdir()
    report = write_report(recorded, folder).read_text()
    assert f"| unseg:{gone} |" in report
    with pytest.raises(ValueError, match="generator checkpoint not found"):
        EvaluationConfig.from_dict(config).check_files()
