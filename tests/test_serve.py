"""``unseg serve``'s library layer without a browser or sockets: uploads, masks, prompts,
protection through the dataset pipeline, views, zip, limits, expiry."""

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unseg.budget import Budget
from unseg.data.images import read_image
from unseg.serve.protectors import ProtectorPool
from unseg.serve.workspace import ServeError, ServeLimits, Workspace, display_name



@pytest.fixture(scope="module")
def pool(tiny_generator_path) -> ProtectorPool:
    return ProtectorPool.load([str(tiny_generator_path)])


def _workspace(root: Path, pool: ProtectorPool, **limits) -> Workspace:
    return Workspace(root, pool.get, pool.choices(), ServeLimits(**limits))


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _rgb(height, width, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _change(upload_bytes: bytes, output: Path) -> np.ndarray:
    original = np.asarray(Image.open(io.BytesIO(upload_bytes))).astype(int)
    protected = read_image(output).pixels.astype(int)
    return np.abs(protected.reshape(original.shape) - original).reshape(*original.shape[:2], -1).max(axis=2)


def test_pool_shares_one_network_and_reports_untrained(pool):
    choice = pool.choices()[0]
    assert choice["name"] == "tiny.safetensors" and choice["trained"] is False
    assert any("UNTRAINED" in note for note in choice["notes"])
    a, b = pool.get(choice["name"], Budget(8, 2)), pool.get(choice["name"], Budget(4, 0))
    assert a.generator is b.generator and (a.budget, b.budget) == (Budget(8, 2), Budget(4, 0))


def test_class_mask_box_points_and_nothing_marked(tmp_path, pool):
    space = _workspace(tmp_path, pool)
    data = _png(_rgb(30, 40))
    images = {name: space.add_upload(f"{name}.png", data) for name in ("mask", "box", "points", "whole")}
    labels = np.zeros((30, 40), np.uint8)
    labels[2:12, 3:20], labels[15:25, 22:38] = 1, 3
    mask = space.add_mask(images["mask"].id, "labels.png", _png(labels))
    assert mask["objects"] == 2 and mask["fraction"] == pytest.approx((labels != 0).mean())
    response = space.protect({"generator": pool.choices()[0]["name"], "epsilon": 8, "epsilon_bg": 2, "images": [
        {"id": images["mask"].id, "mask": mask["id"]},
        {"id": images["box"].id, "boxes": [[5, 4, 25, 20]]},
        {"id": images["points"].id, "points": [[10, 10], [30, 20]], "point_labels": [1, 0]},
        {"id": images["whole"].id},
    ]})
    assert not response["failures"]
    results = {result["name"]: result for result in response["results"]}
    out = tmp_path / "jobs" / response["job"] / "protected"
    assert {name: r["stats"]["prompt"] for name, r in results.items()} == {
        "mask.png": "mask", "box.png": "box", "points.png": "points", "whole.png": "mask"}
    assert results["mask.png"]["stats"]["num_objects"] == 2

    change = _change(data, out / "mask.png")
    assert change[labels != 0].max() == 8 and change[labels == 0].max() == 2
    box = np.zeros((30, 40), bool)
    box[4:20, 5:25] = True
    change = _change(data, out / "box.png")
    assert change[box].max() == 8 and change[~box].max() == 2
    whole = _change(data, out / "whole.png")  # nothing marked: everything at ε
    assert results["whole.png"]["stats"]["region_fraction"] == 1.0 and (whole == 8).mean() > 0.9

    archive = zipfile.ZipFile(space.job_file(response["job"], "unseg-protected.zip"))
    assert sorted(archive.namelist()) == ["box.png", "manifest.jsonl", "mask.png", "points.png", "whole.png"]
    manifest = [json.loads(line) for line in archive.read("manifest.jsonl").splitlines()]
    assert {record["source"] for record in manifest} == set(results)
    assert archive.read("box.png") == (out / "box.png").read_bytes()
    noise = read_image(space.job_file(response["job"], "box.noise.png")).pixels.astype(int)
    assert set(np.unique(noise - 128) % 10) == {0}  # the change x10 around mid-grey
    assert np.abs(noise[box] - 128).max() == 80 and np.abs(noise[~box] - 128).max() == 20
    zoom = Image.open(space.job_file(response["job"], "box.zoom.png"))
    assert zoom.size == (3 * 2 * 30 + 8, 2 * 30)  # three crops of the 30 px short side, x2, two gaps


def test_same_name_twice_and_16_bit_gray(tmp_path, pool):
    space = _workspace(tmp_path, pool)
    first, second = space.add_upload("a.png", _png(_rgb(20, 20, 1))), space.add_upload("A.png", _png(_rgb(20, 20, 2)))
    gray = np.random.default_rng(0).integers(0, 65536, (24, 16), dtype=np.uint16)
    deep = space.add_upload("deep.png", _png(gray))
    response = space.protect({"epsilon": 8, "epsilon_bg": 2, "images": [{"id": first.id}, {"id": second.id},
                                                                        {"id": deep.id, "boxes": [[0, 0, 8, 8]]}]})
    assert [r["output"] for r in response["results"]] == ["a.png", "A_2.png", "deep.png"]
    assert [r["name"] for r in response["results"]] == ["a.png", "A_2.png", "deep.png"]
    protected = np.asarray(Image.open(tmp_path / "jobs" / response["job"] / "protected" / "deep.png"))
    assert protected.dtype == np.uint16 and protected.shape == (24, 16)
    change = np.abs(protected.astype(int) - gray)
    assert change[:8, :8].max() <= 2056 and change[8:, :].max() <= 514  # 8/255 and 2/255 of 65535


def test_bad_input_is_refused_with_a_message(tmp_path, pool):
    space = _workspace(tmp_path, pool, max_upload_bytes=2000, max_pixels=50 * 50)
    with pytest.raises(ServeError, match="notes.txt is not an image") as error:
        space.add_upload("notes.txt", b"hello")
    assert error.value.status == 400
    with pytest.raises(ServeError, match="the upload limit is") as error:
        space.add_upload("big.png", b"x" * 2001)
    assert error.value.status == 413
    with pytest.raises(ServeError, match=r"60x60 = 0.0 megapixels; the limit is 0.0") as error:
        space.add_upload("wide.png", _png(np.zeros((60, 60), np.uint8)))
    assert error.value.status == 413
    with pytest.raises(ServeError, match="cannot be decoded"):
        space.add_upload("cut.png", _png(_rgb(20, 20))[:200])
    upload = space.add_upload("ok.png", _png(np.zeros((20, 30), np.uint8)))
    with pytest.raises(ServeError, match="mask m.png is 20x20 but image ok.png is 30x20"):
        space.add_mask(upload.id, "m.png", _png(np.ones((20, 20), np.uint8)))
    for request, message in [
        ({"images": []}, "upload at least one image"),
        ({"images": [{"id": upload.id, "boxes": [[5, 5, 2, 9]]}]}, "ok.png: boxes need x1 > x0"),
        ({"images": [{"id": upload.id, "points": [[1, 2]], "point_labels": [7]}]}, "0/1 label per point"),
        ({"images": [{"id": upload.id, "mask": "f" * 32}]}, "unknown mask"),
        ({"images": [{"id": upload.id}], "epsilon": "lots"}, "ε must be a number"),
        ({"images": [{"id": upload.id}], "epsilon": 99}, "between 0 and 32"),
        ([1, 2], "must be a JSON object"),
    ]:
        with pytest.raises(ServeError, match=message):
            space.protect(request)
    assert sorted(path.name for path in (tmp_path / "uploads").iterdir()) == [upload.id]  # nothing else kept
    assert not any((tmp_path / "jobs").iterdir())


def test_old_uploads_and_jobs_expire_and_only_listed_files_are_served(tmp_path, pool):
    space = _workspace(tmp_path, pool, keep_uploads=2, keep_jobs=1)
    ids = [space.add_upload(f"{i}.png", _png(_rgb(10, 10, i))).id for i in range(3)]
    assert not (tmp_path / "uploads" / ids[0]).exists()
    with pytest.raises(ServeError, match="upload it again") as error:
        space.upload(ids[0])
    assert error.value.status == 404
    first = space.protect({"images": [{"id": ids[1]}]})["job"]
    second = space.protect({"images": [{"id": ids[2]}]})["job"]
    assert not (tmp_path / "jobs" / first).exists() and (tmp_path / "jobs" / second).is_dir()
    assert space.job_file(second, "2.png").is_file()
    for job, name in [(first, "1.png"), (second, "../../uploads"), (second, "2.noise.png/../x"), ("..", "2.png")]:
        with pytest.raises(ServeError):
            space.job_file(job, name)


def test_display_names_are_safe():
    assert display_name("../../etc/passwd") == "passwd"
    assert display_name("C:\\Users\\me\\cat photo.JPG") == "cat photo.JPG"
    assert display_name("<script>.png") == "_script_.png"
    assert display_name("...") == "image" and display_name(None) == "image"
