"""``unseg serve`` end to end: the real command in a subprocess, driven by headless Chromium
(Playwright) like a person would — upload, draw a box with the mouse, protect, download, check
the budget on the downloaded file; a text file gets a clear error. Also raw HTTP abuse (bad
uploads, oversized bodies, unknown ids) that must be answered without the server going down.

Chromium comes from the system (Debian's ``chromium``, installed by ``.ci/run``); if it cannot
start, these tests fail, they do not skip. ``UNSEG_SCREENSHOT=docs/serve.png`` saves the page
(the README's screenshot).
"""

import http.client
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unseg.data.images import read_image

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
START_TIMEOUT = 90


def chromium_path() -> str:
    path = os.environ.get("UNSEG_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.fail("Chromium not found: install it (Debian: apt-get install chromium) or set UNSEG_CHROMIUM")
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``unseg serve`` with the shipped generator on a free port; yields (url, stdout file, cwd).
    Always stopped at the end; its working directory is an empty folder, checked after."""
    cwd = tmp_path_factory.mktemp("server_cwd")
    log_path = tmp_path_factory.mktemp("server_log") / "stdout.txt"
    port = _free_port()
    threads = os.environ.get("UNSEG_TEST_THREADS", "2")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": threads, "PYTHONUNBUFFERED": "1"}
    with log_path.open("w") as log:
        process = subprocess.Popen([sys.executable, "-m", "unseg", "serve", "--port", str(port)], cwd=cwd, env=env,
                                   stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                with urllib.request.urlopen(url + "/api/info", timeout=2) as response:
                    assert response.status == 200
                break
            except (urllib.error.URLError, ConnectionError):
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"unseg serve did not start:\n{log_path.read_text()}")
                time.sleep(0.25)
        yield url, log_path, cwd
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
    temp = [line.split(": ", 1)[1].split(" (")[0] for line in log_path.read_text().splitlines()
            if line.startswith("temporary folder: ")]
    assert temp and not Path(temp[0]).exists(), "the temporary folder is removed on exit"
    assert not list(cwd.iterdir()), "the server wrote into its working directory"


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    """A 900x600 JPEG photo (scikit-image's coffee, upscaled): larger than the page shows it, so
    the box must be mapped from screen to image pixels."""
    import skimage.data

    path = tmp_path_factory.mktemp("photo") / "coffee.jpg"
    Image.fromarray(skimage.data.coffee()).resize((900, 600), Image.BICUBIC).save(path, quality=92)
    return path


def test_protect_in_the_browser(server, photo, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    url, _, _ = server
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 860}, accept_downloads=True)
            page.goto(url)
            expect(page.locator("body[data-ready='1']")).to_be_attached(timeout=15000)
            page.set_input_files("#files", str(photo))
            expect(page.locator("#canvas[data-ready='1']")).to_be_attached(timeout=15000)

            # draw a box with the mouse: down, several moves, up
            rect = page.locator("#canvas").bounding_box()
            start = (rect["x"] + 0.30 * rect["width"], rect["y"] + 0.15 * rect["height"])
            end = (rect["x"] + 0.68 * rect["width"], rect["y"] + 0.72 * rect["height"])
            page.mouse.move(*start)
            page.mouse.down()
            page.mouse.move(*end, steps=8)
            page.mouse.up()
            scale = 900 / rect["width"]
            expected = [(start[0] - rect["x"]) * scale, (start[1] - rect["y"]) * scale,
                        (end[0] - rect["x"]) * scale, (end[1] - rect["y"]) * scale]
            marks = page.inner_text("#marks")
            assert marks.startswith("Marked: box ("), marks
            box = [int(v) for v in marks.split("(", 1)[1].replace(")–(", ", ").rstrip(")").split(", ")]
            assert np.allclose(box, expected, atol=1.5), (box, expected)
            assert rect["width"] < 900  # the page shows the image scaled: the mapping was exercised

            page.click("#protect")
            expect(page.locator("#results[data-done='1']")).to_be_attached(timeout=30000)
            stats = page.inner_text(".stats")
            assert "measured L∞ 8 on the object, 2 elsewhere (budget 8 / 2 levels) · prompt: box" in stats, stats
            assert page.inner_text("#error") == ""
            if os.environ.get("UNSEG_SCREENSHOT"):
                _screenshot(page, Path(os.environ["UNSEG_SCREENSHOT"]))

            with page.expect_download() as download_info:
                page.click("#download-0")
            downloaded = tmp_path / download_info.value.suggested_filename
            download_info.value.save_as(downloaded)
            with page.expect_download() as zip_info:
                page.click("#download-zip")
            zip_info.value.save_as(tmp_path / "all.zip")

            # a painted mask goes the same way (exported by the page as a PNG, read as a mask)
            page.click("#clear")
            page.check("input[value='paint']")
            page.mouse.move(rect["x"] + 0.1 * rect["width"], rect["y"] + 0.8 * rect["height"])
            page.mouse.down()
            page.mouse.move(rect["x"] + 0.25 * rect["width"], rect["y"] + 0.85 * rect["height"], steps=5)
            page.mouse.up()
            assert "painted mask" in page.inner_text("#marks")
            page.click("#protect")
            expect(page.locator("#results[data-done='1']")).to_be_attached(timeout=30000)
            assert "prompt: mask" in page.inner_text(".stats")

            # not an image: a clear message, nothing added
            notes = tmp_path / "notes.txt"
            notes.write_text("this is not a picture")
            page.set_input_files("#files", str(notes))
            expect(page.locator("#error")).to_contain_text("notes.txt is not an image", timeout=10000)
            assert page.locator("#thumbs button").count() == 1
        finally:
            browser.close()

    # the downloaded file: lossless PNG, same size, inside the budget on and off the box
    assert downloaded.name == "coffee.png" and Image.open(downloaded).format == "PNG"
    original = read_image(photo).pixels.astype(int)
    protected = read_image(downloaded).pixels.astype(int)
    assert protected.shape == original.shape == (600, 900, 3)
    change = np.abs(protected - original).max(axis=2)
    x0, y0, x1, y1 = box
    inside = np.zeros(change.shape, bool)
    inside[y0:y1, x0:x1] = True
    assert change[inside].max() == 8 and change[~inside].max() == 2
    assert (change[inside] == 8).mean() > 0.9  # saturated noise: the whole budget on the object
    with zipfile.ZipFile(tmp_path / "all.zip") as archive:
        assert sorted(archive.namelist()) == ["coffee.png", "manifest.jsonl"]
        assert archive.read("coffee.png") == downloaded.read_bytes()
        record = json.loads(archive.read("manifest.jsonl").splitlines()[0])
    assert record["prompt"] == "box" and record["source"] == "coffee.jpg"
    assert (record["linf_inside"], record["linf_outside"]) == (8, 2)


def _screenshot(page, path: Path) -> None:
    """The page as a small PNG (half size, 128-colour palette: the README's picture, not a
    measurement; README images stay under 200 kB)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.open(io.BytesIO(page.screenshot(full_page=True))).convert("RGB")
    image = image.resize((image.width // 2, image.height // 2), Image.Resampling.LANCZOS)
    image.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)


def _post(url: str, data: bytes, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=data, headers=headers or {}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def test_bad_requests_get_clear_answers_and_the_server_survives(server):
    url, _, _ = server
    status, body = _post(url + "/api/upload", b"%PDF-1.4 not an image", {"X-Filename": "report.pdf"})
    assert status == 400 and body["error"].startswith("report.pdf is not an image")
    status, body = _post(url + "/api/upload", b"", {"X-Filename": "empty.png"})
    assert status == 400 and "empty" in body["error"]
    status, body = _post(url + "/api/upload", _png(np.zeros((40, 60, 3), np.uint8)),
                         {"X-Filename": "..%2F..%2Fetc%2Fpasswd.png"})
    assert status == 200 and body["name"] == "passwd.png" and (body["width"], body["height"]) == (60, 40)
    image_id = body["id"]

    # an oversized body is refused from its Content-Length, before it is read
    connection = http.client.HTTPConnection(url.removeprefix("http://"), timeout=30)
    connection.putrequest("POST", "/api/upload")
    connection.putheader("Content-Length", str(200 * 2**20))
    connection.putheader("X-Filename", "huge.png")
    connection.endheaders()
    connection.send(b"\x89PNG")
    response = connection.getresponse()
    assert response.status == 413 and "larger than the upload limit of 25 MiB" in json.loads(response.read())["error"]
    connection.close()

    status, body = _post(url + f"/api/uploads/{image_id}/mask", _png(np.ones((20, 30), np.uint8)),
                         {"X-Filename": "mask.png"})
    assert status == 400 and "mask mask.png is 30x20 but image passwd.png is 60x40" in body["error"]
    status, body = _post(url + f"/api/uploads/{image_id}/mask", _png(np.full((40, 60, 3), (9, 0, 0), np.uint8)),
                         {"X-Filename": "colour.png"})
    assert status == 400 and "single-channel" in body["error"]

    protect = url + "/api/protect"
    assert _post(protect, b"{not json")[0] == 400
    status, body = _post(protect, json.dumps({"images": [{"id": "f" * 32}]}).encode())
    assert status == 404 and "upload it again" in body["error"]
    status, body = _post(protect, json.dumps({"images": [{"id": image_id, "boxes": [[70, 0, 90, 10]]}]}).encode())
    assert status == 400 and "lies outside the 60x40 image" in body["error"]
    status, body = _post(protect, json.dumps({"images": [{"id": image_id}], "epsilon": 2, "epsilon_bg": 4}).encode())
    assert status == 400 and "must not exceed" in body["error"]
    status, body = _post(protect, json.dumps({"images": [{"id": image_id}], "generator": "/etc/passwd"}).encode())
    assert status == 400 and "unknown generator" in body["error"]

    for path in ("/api/jobs/../../etc/passwd", "/api/jobs/" + "0" * 32 + "/manifest.jsonl",
                 "/static/..%2f..%2fapp.py", "/api/uploads/nope/preview.png"):
        try:
            urllib.request.urlopen(url + path, timeout=10)
            raise AssertionError(f"{path} was served")
        except urllib.error.HTTPError as error:
            assert error.code == 404, path
    with urllib.request.urlopen(url + "/api/info", timeout=10) as response:  # still up
        assert json.loads(response.read())["generators"][0]["name"] == "default"
        assert "default-src 'self'" in response.headers["Content-Security-Policy"]


def test_serve_binds_localhost_by_default():
    from typer.main import get_command

    from unseg.cli.main import app

    options = {param.name: param for param in get_command(app).commands["serve"].params}
    assert options["host"].default == "127.0.0.1" and options["port"].default == 7860
