"""The web demo in headless Chromium: `python -m export.serve` serves apps/web and the pretrained
`cvae-mnist5k` decoder, the page runs it with onnxruntime-web (WebAssembly), and its canvas must
show what `export.runtime` computes for the same latents and class.

Needs Chromium at /usr/bin/chromium (or $CHROMIUM), onnxruntime-web in apps/web/node_modules and
Playwright's Python package; `apps/web/setup.sh` installs the first two. Without Chromium the
browser tests skip on a developer's machine, but in CI (`CI` set) every missing piece is a failure.
"""

import contextlib
import json
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.request

import numpy as np
import onnx
import pytest

from export import serve
from export.runtime import load_decoder
from zoo import pretrained

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
LATENT_DIM = 16  # more than the page's 8 sliders, so "random" fills a grid of 16 images
TOLERANCE = 2  # of 255: the page and numpy round 0-255 grey levels on their own
CLASS_NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def in_ci():
    return os.environ.get("CI", "").lower() not in ("", "0", "false")


def missing_setup():
    """What the browser tests still need, as the step that installs it; None when all is there."""
    if not os.path.exists(CHROMIUM):
        return f"Chromium is not installed ({CHROMIUM} is missing): run `apps/web/setup.sh` as root"
    if not os.path.isdir(os.path.join(serve.WEB_DIR, serve.ORT_DIST)):
        return "onnxruntime-web is not installed: run `npm ci --prefix apps/web` (or `apps/web/setup.sh`)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright is not installed: run `pip install -e \".[test]\"`"
    return None


def require_setup():
    """Skips without Chromium on a developer's machine; otherwise fails naming the missing step."""
    problem = missing_setup()
    if problem and not in_ci() and not os.path.exists(CHROMIUM):
        pytest.skip(f"{problem} (with CI=true this is a failure)")
    if problem:
        pytest.fail(problem)


@pytest.fixture(scope="module")
def cvae_run():
    """The bundled pretrained conditional VAE: a folder with a checksum-verified decoder.onnx."""
    folder = pretrained.locate("cvae-mnist5k")
    pretrained.verify(folder, "decoder.onnx")
    return folder


@pytest.fixture(scope="module")
def decoder(cvae_run):
    return load_decoder(os.path.join(cvae_run, "decoder.onnx"), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def url(cvae_run, tmp_path_factory):
    """The real command line, `python -m export.serve RUN_DIR --port 0`, in a subprocess."""
    require_setup()
    log = tmp_path_factory.mktemp("serve") / "stderr.txt"
    with open(log, "w") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "export.serve", cvae_run, "--port", "0", "--quiet"],
                                   cwd=ROOT, stdout=subprocess.PIPE, stderr=stderr, text=True)
    line = process.stdout.readline()  # "Serving ... at http://127.0.0.1:PORT/  (Ctrl-C to stop)"
    if " at http://" not in line:
        process.kill()
        process.wait(timeout=10)
        pytest.fail(f"python -m export.serve did not start: {line}{log.read_text()}")
    yield line.split(" at ")[1].split()[0]
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture(scope="module")
def browser():
    require_setup()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, url):
    """The demo page after its first picture; page errors fail the test with their text."""
    with opened(browser, url) as page:
        yield page


@contextlib.contextmanager
def opened(browser, url):
    page = browser.new_page()
    errors = []
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(url)
    try:
        page.evaluate("window.demo.ready")
    except Exception as err:
        pytest.fail(f"the page did not start: {err}; status: {page.text_content('#status')}; console: {errors}")
    yield page
    assert not errors, errors
    page.close()


@pytest.fixture(scope="module")
def named_url(cvae_run, tmp_path_factory):
    """The demo of a copy of the bundled decoder whose facts name its classes, served in this process."""
    require_setup()
    model = onnx.load(os.path.join(cvae_run, "decoder.onnx"))
    props = {p.key: p.value for p in model.metadata_props}
    onnx.helper.set_model_props(model, {**props, "class_names": json.dumps(CLASS_NAMES)})
    folder = tmp_path_factory.mktemp("named")
    onnx.save(model, str(folder / "decoder.onnx"))
    server = serve.make_server(str(folder), quiet=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def images_on_canvas(page):
    """The canvas cells as uint8 RGBA `[n, H, W, 4]`, read back with getImageData."""
    cells = page.evaluate("""() => {
        const {cols, pad, width, height} = window.demo.layout;
        const context = document.getElementById("grid").getContext("2d");
        return window.demo.state.latents.map((_, i) => Array.from(context.getImageData(
            pad + (i % cols) * (width + pad), pad + Math.floor(i / cols) * (height + pad), width, height).data));
    }""")
    layout = page.evaluate("window.demo.layout")
    return np.array(cells, np.uint8).reshape(len(cells), layout["height"], layout["width"], 4)


def expected_pixels(decoder, z, label):
    """What the page must draw: the runtime's mean images as 0-255 grey levels."""
    mean = decoder.decode(np.asarray(z, np.float32), labels=[label] * len(z))
    return np.round(np.clip(mean, 0, 1) * 255).astype(np.int16)


def assert_canvas_matches(page, decoder, z, label):
    pixels = images_on_canvas(page).astype(np.int16)
    assert len(pixels) == len(z)
    assert (pixels[..., 3] == 255).all(), "the canvas is not opaque"
    assert (pixels[..., :3] == pixels[..., :1]).all(), "grey images must have R = G = B"
    error = np.abs(pixels[..., :3] - expected_pixels(decoder, z, label)).max()
    assert error <= TOLERANCE, f"canvas differs from export.runtime by {error}/255"
    return pixels


def wait_for_render(page, renders_before):
    page.wait_for_function("n => window.demo.renders > n && document.getElementById('grid').dataset.ready === 'true'",
                           arg=renders_before)


def test_canvas_matches_the_runtime_for_a_class_picked_in_the_page(page, decoder):
    renders = page.evaluate("window.demo.renders")
    page.select_option("#label", "3")  # a real change event on the <select>
    wait_for_render(page, renders)
    assert page.evaluate("window.demo.state.label") == 3

    z = np.random.default_rng(0).standard_normal((1, LATENT_DIM)).astype(np.float32)
    z[0, 0] = -2.5
    assert np.abs(expected_pixels(decoder, z, 3) - expected_pixels(decoder, z, 0)).max() > 3 * TOLERANCE
    page.evaluate("z => window.demo.render({z})", z.tolist())
    before = assert_canvas_matches(page, decoder, z, 3)

    renders = page.evaluate("window.demo.renders")
    page.focus("#z0")
    page.keyboard.press("End")  # the first slider to its maximum: a real input event
    wait_for_render(page, renders)
    z[0, 0] = float(page.input_value("#z0"))
    assert z[0, 0] == 3.0 and page.evaluate("window.demo.state.latents[0][0]") == 3.0
    after = assert_canvas_matches(page, decoder, z, 3)
    assert np.abs(after - before).max() > 3 * TOLERANCE, "moving the slider did not change the picture"


def test_random_fills_the_grid_from_the_prior_with_the_sliders_shared(page, decoder):
    page.select_option("#label", "7")
    renders, seed = page.evaluate("[window.demo.renders, window.demo.state.seed]")
    page.click("#random")
    wait_for_render(page, renders)
    state = page.evaluate("window.demo.state")
    z = np.array(state["latents"], np.float32)
    assert state["seed"] == seed + 1 and state["label"] == 7 and z.shape == (16, LATENT_DIM)
    assert (z[:, :8] == z[0, :8]).all() and np.unique(z[:, 8:], axis=0).shape[0] == 16
    assert_canvas_matches(page, decoder, z, 7)
    assert page.text_content("#seed") == f"seed {seed + 1}"


def test_the_class_picker_shows_the_names_in_the_facts(browser, named_url, decoder):
    with opened(browser, named_url) as page:
        options = page.eval_on_selector_all("#label option", "options => options.map(o => [o.value, o.text])")
        assert options == [[str(c), name] for c, name in enumerate(CLASS_NAMES)]
        renders = page.evaluate("window.demo.renders")
        page.select_option("#label", label="seven")
        wait_for_render(page, renders)
        assert page.evaluate("window.demo.state.label") == 7 and " of class seven in " in page.text_content("#status")
        assert_canvas_matches(page, decoder, np.array(page.evaluate("window.demo.state.latents")), 7)


def test_server_serves_the_facts_and_wasm_and_nothing_else(url, decoder):
    with urllib.request.urlopen(url + "decoder.json") as response:
        assert json.load(response) == {"file": "decoder.onnx", **decoder.facts}
    for name, kind in [("ort/ort-wasm-simd-threaded.wasm", "application/wasm"),
                       ("ort/ort.wasm.min.mjs", "text/javascript"), ("demo.js", "text/javascript"),
                       ("", "text/html; charset=utf-8")]:
        request = urllib.request.Request(url + name, method="HEAD")
        with urllib.request.urlopen(request) as response:
            assert response.headers["Content-Type"] == kind, name
    for name in ["package.json", "node_modules/onnxruntime-web/package.json", "ort/%2e%2e%2fpackage.json", "ort/"]:
        with pytest.raises(urllib.error.HTTPError, match="404"):
            urllib.request.urlopen(url + name)


def test_missing_decoder_and_missing_onnxruntime_web_say_how_to_fix_them(tmp_path, cvae_run):
    code = ("import sys, export.serve as serve; status = serve.main(sys.argv[1:]); "
            "assert 'tensorflow' not in sys.modules, 'export.serve imported TensorFlow'; sys.exit(status)")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, cwd=ROOT,
                            timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr == (f"error: {tmp_path / 'decoder.onnx'} not found: export the run's decoder first with "
                             f"`python -m export {tmp_path} --formats onnx`.\n")
    with pytest.raises(serve.ServeError, match=r"onnxruntime-web is not installed .*run `npm ci --prefix apps/web`"):
        serve.make_server(cvae_run, web_dir=str(tmp_path))


def test_help_says_what_to_install_and_how_to_serve(capsys):
    with pytest.raises(SystemExit) as exit_:
        serve.main(["--help"])
    text = capsys.readouterr().out
    assert exit_.value.code == 0 and "RUN_DIR" in text and "--port" in text and "127.0.0.1" in text
    assert "python -m export RUN_DIR --formats onnx" in text and "npm ci --prefix apps/web" in text
