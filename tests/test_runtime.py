"""export.runtime on its own, without TensorFlow: a tiny ONNX decoder written with onnx.helper.

The exported zoo decoders are run through the runtime in test_export.py; here the runtime's own
logic is pinned down: validation messages, prior sampling, provider choice, and that importing it
leaves TensorFlow out.
"""

import json
import os
import shutil
import struct
import subprocess
import sys
import warnings
import zlib

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper

from export import runtime
from export.runtime import choose_providers, load_decoder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LATENT, CLASSES, SHAPE = 4, 3, (2, 2, 1)
WEIGHTS = np.linspace(-1, 1, LATENT * 4, dtype=np.float32).reshape(LATENT, 4)
EMBEDDING = np.arange(CLASSES * 4, dtype=np.float32).reshape(CLASSES, 4) / 10
MIXTURE = {"kind": "gaussian_mixture", "logits": [0.0, 0.0], "loc": [[5.0] * LATENT, [-5.0] * LATENT], "scale": [[0.1] * LATENT] * 2}


def facts(conditional=True, prior=MIXTURE):
    inputs = [{"name": "z", "dtype": "float32", "shape": [LATENT]}]
    inputs += [{"name": "labels", "dtype": "int32", "shape": []}] if conditional else []
    return {"variant": "cvae" if conditional else "ae", "latent_dim": LATENT,
            "num_classes": CLASSES if conditional else None, "output_shape": list(SHAPE), "inputs": inputs,
            "outputs": ["mean"], "prior": prior, "zoo_version": "test"}


def expected(z, labels=None):
    """What the tiny decoder computes: sigmoid(z W + E[labels]) as [B, 2, 2, 1] images."""
    logits = z @ WEIGHTS + (0 if labels is None else EMBEDDING[labels])
    return (1 / (1 + np.exp(-logits))).reshape(-1, *SHAPE)


def write_onnx(path, conditional=True, metadata=True):
    """A decoder graph with the export's input/output names, batch axis and metadata (`metadata`:
    True for the facts, False for none, or a dict of metadata strings)."""
    nodes = [helper.make_node("MatMul", ["z", "W"], ["h"])]
    inputs = [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", LATENT])]
    if conditional:
        inputs.append(helper.make_tensor_value_info("labels", TensorProto.INT32, ["batch"]))
        nodes += [helper.make_node("Gather", ["E", "labels"], ["e"]), helper.make_node("Add", ["h", "e"], ["a"])]
    nodes += [helper.make_node("Reshape", ["a" if conditional else "h", "shape"], ["r"]),
              helper.make_node("Sigmoid", ["r"], ["mean"])]
    initializers = [helper.make_tensor("W", TensorProto.FLOAT, WEIGHTS.shape, WEIGHTS.ravel()),
                    helper.make_tensor("E", TensorProto.FLOAT, EMBEDDING.shape, EMBEDDING.ravel()),
                    helper.make_tensor("shape", TensorProto.INT64, [4], [-1, *SHAPE])]
    output = helper.make_tensor_value_info("mean", TensorProto.FLOAT, ["batch", *SHAPE])
    model = helper.make_model(helper.make_graph(nodes, "decoder", inputs, [output], initializers),
                              opset_imports=[helper.make_opsetid("", 17)])
    if metadata:
        props = metadata if isinstance(metadata, dict) else {k: json.dumps(v) for k, v in facts(conditional).items()}
        helper.set_model_props(model, props)
    onnx.save(model, path)
    return str(path)


@pytest.fixture
def conditional(tmp_path):
    return load_decoder(write_onnx(tmp_path / "decoder.onnx"))


@pytest.fixture
def unconditional(tmp_path):
    return load_decoder(write_onnx(tmp_path / "decoder.onnx", conditional=False))


def test_facts_become_attributes(conditional):
    assert (conditional.latent_dim, conditional.num_classes, conditional.output_shape) == (LATENT, CLASSES, SHAPE)
    assert conditional.variant == "cvae" and conditional.providers == ["CPUExecutionProvider"]
    assert "num_classes=3" in repr(conditional)


def test_class_names_come_from_the_facts_and_older_files_have_none(tmp_path, conditional):
    assert conditional.class_names is None  # facts without the key: exported before names were recorded
    props = lambda names: {k: json.dumps(v) for k, v in {**facts(), "class_names": names}.items()}
    named = load_decoder(write_onnx(tmp_path / "named.onnx", metadata=props(["cat", "dog", "owl"])))
    assert named.class_names == ["cat", "dog", "owl"]
    owl = named.class_names.index("owl")  # labels stay ids
    np.testing.assert_array_equal(named.generate(2, labels=owl, seed=0), named.generate(2, labels=2, seed=0))
    for bad in (["cat", "dog"], "cat dog owl", ["cat", 1, "owl"]):
        with pytest.raises(ValueError, match=r"bad.onnx's facts name the classes .*, not a list of its 3 class names: "
                                             r"export it with `python -m export RUN_DIR`"):
            load_decoder(write_onnx(tmp_path / "bad.onnx", metadata=props(bad)))


def test_decode_computes_the_graph_for_any_batch(conditional, unconditional):
    for n in (1, 5):
        z = np.random.default_rng(n).standard_normal((n, LATENT)).astype(np.float32)
        labels = np.arange(n) % CLASSES
        np.testing.assert_allclose(conditional.decode(z, labels), expected(z, labels), atol=1e-6)
        np.testing.assert_allclose(unconditional.decode(z), expected(z), atol=1e-6)


def test_float64_latents_and_int64_labels_are_cast(conditional):
    z = np.zeros((2, LATENT))
    np.testing.assert_allclose(conditional.decode(z, [0, 2]), expected(z, np.array([0, 2])), atol=1e-6)


def test_float64_latents_beyond_float32_are_refused_after_the_cast(conditional):
    z = np.zeros((2, LATENT))
    z[1, 2] = 1e300  # finite in float64, Inf in float32: the decoder would give NaN
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and numpy's overflow warning stays quiet
        with pytest.raises(ValueError, match=r"`z` has values beyond the float32 range \(largest magnitude 1e\+300\); "
                                             r"expected finite float32 numbers\."):
            conditional.decode(z, [0, 1])


def test_decode_and_generate_run_in_bounded_batches(conditional):
    """Each runtime call gets at most `batch_size` images, and the batches put together are what
    one call on all the latents gives."""
    calls, run = [], conditional._run
    conditional._run = lambda feeds, outputs=None: calls.append(feeds) or run(feeds, outputs)
    conditional.batch_size = 3
    images = conditional.generate(10, labels=2, seed=0)
    assert [len(feeds["z"]) for feeds in calls] == [3, 3, 3, 1]
    z = np.concatenate([feeds["z"] for feeds in calls])
    assert np.all(np.concatenate([feeds["labels"] for feeds in calls]) == 2)
    one_go = run({"z": z, "labels": np.full(10, 2, np.int32)})["mean"]
    np.testing.assert_array_equal(images, one_go)
    calls.clear()
    np.testing.assert_array_equal(conditional.decode(z, [2] * 10), one_go)
    assert [len(feeds["z"]) for feeds in calls] == [3, 3, 3, 1]
    assert conditional.decode(np.zeros((0, LATENT), np.float32), np.zeros(0, int)).shape == (0, *SHAPE)


def test_the_default_batch_holds_a_fixed_number_of_output_values(conditional):
    assert conditional.batch_size == runtime.CHUNK_VALUES // int(np.prod(SHAPE))


@pytest.mark.parametrize("z, labels, message", [
    (np.zeros((2, 3)), [0, 1], r"Expected `z` of shape \(batch, 4\), received \(2, 3\)\."),
    (np.zeros(4), [0], r"Expected `z` of shape \(batch, 4\), received \(4,\)\."),
    (np.zeros((2, 4), np.int64), [0, 1], r"Expected floating-point values for `z`, received dtype int64\."),
    (np.full((2, 4), np.nan), [0, 1], r"`z` contains NaN or Inf values; expected finite numbers\."),
    (np.zeros((2, 4)), None, r"This decoder is conditional on 3 classes: pass `labels`\."),
    (np.zeros((2, 4)), [0, 5], r"Expected `labels` in \[0, 2\], received values in \[0, 5\]\."),
    (np.zeros((2, 4)), [-1, 0], r"Expected `labels` in \[0, 2\], received values in \[-1, 0\]\."),
    (np.zeros((2, 4)), [0.0, 1.0], r"Expected integer values for `labels`, received dtype float64\."),
    (np.zeros((2, 4)), [0, 1, 2], r"Expected 2 `labels` \(one per latent\), received 3\."),
    (np.zeros((2, 4)), [[0], [1]], r"Expected `labels` of shape \(batch\), received \(2, 1\)\."),
])
def test_bad_inputs_say_what_was_expected(conditional, z, labels, message):
    with pytest.raises(ValueError, match=message):
        conditional.decode(z, labels)


def test_labels_for_an_unconditional_decoder_are_rejected(unconditional):
    with pytest.raises(ValueError, match="This decoder is not conditional: expected labels=None, received labels"):
        unconditional.decode(np.zeros((1, LATENT)), [0])


def test_generate_draws_from_the_prior_in_the_facts(conditional):
    images = conditional.generate(64, labels=1, seed=0)
    assert images.shape == (64, *SHAPE) and images.dtype == np.float32
    np.testing.assert_array_equal(images, conditional.generate(64, labels=[1] * 64, seed=0))
    assert not np.array_equal(images, conditional.generate(64, labels=1, seed=1))
    z = runtime.sample_prior(MIXTURE, 2000, np.random.default_rng(0))
    assert abs(np.mean(z[:, 0] > 0) - 0.5) < 0.05  # both components, equal weights
    assert np.allclose(np.abs(z), 5, atol=0.5)  # around +-5, scale 0.1


def test_codes_are_drawn_per_grid_position():
    probs = [[[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], [[0.5, 0.5, 0.0], [0.2, 0.3, 0.5]]]  # [h=2, w=2, K=3]
    codes = runtime.sample_prior({"kind": "categorical", "probs": probs}, 4000, np.random.default_rng(0))
    assert codes.shape == (4000, 2, 2) and codes.dtype == np.int32
    assert (codes[:, 0, 0] == 0).all() and (codes[:, 0, 1] == 2).all()
    np.testing.assert_allclose(np.bincount(codes[:, 1, 1], minlength=3) / 4000, probs[1][1], atol=0.03)


@pytest.mark.parametrize("n", [0, -3, 2.5, True])
def test_generate_needs_a_positive_count(conditional, n):
    with pytest.raises(ValueError, match=f"Expected a positive integer number of images, received n={n!r}"):
        conditional.generate(n, labels=0)


def test_generate_without_a_prior_says_so():
    decoder = runtime.Decoder(lambda feeds: {}, facts(conditional=False, prior=None), "ae.onnx")
    with pytest.raises(ValueError, match="This 'ae' decoder has no prior to draw latents from"):
        decoder.generate(2)


def test_sample_inputs_cover_every_input_with_valid_values():
    codes_facts = {**facts(), "inputs": [{"name": "codes", "dtype": "int32", "shape": [2, 2]},
                                         {"name": "labels", "dtype": "int32", "shape": []}],
                   "num_codes": 8, "prior": None}
    inputs = runtime.sample_inputs(codes_facts, 50, seed=0)
    assert inputs["codes"].shape == (50, 2, 2) and inputs["codes"].dtype == np.int32
    assert 0 <= inputs["codes"].min() and inputs["codes"].max() < 8
    assert 0 <= inputs["labels"].min() and inputs["labels"].max() < CLASSES
    no_prior = runtime.sample_inputs(facts(prior=None), 3, seed=0)["z"]
    assert no_prior.shape == (3, LATENT) and no_prior.dtype == np.float32


@pytest.mark.parametrize("available, requested, chosen", [
    (["CUDAExecutionProvider", "CPUExecutionProvider"], None, ["CUDAExecutionProvider", "CPUExecutionProvider"]),
    (["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"], None,
     ["CUDAExecutionProvider", "CPUExecutionProvider"]),
    (["AzureExecutionProvider", "CPUExecutionProvider"], None, ["CPUExecutionProvider"]),
    (["CUDAExecutionProvider", "CPUExecutionProvider"], ["CPUExecutionProvider"], ["CPUExecutionProvider"]),
    (["CUDAExecutionProvider", "CPUExecutionProvider"], [("CUDAExecutionProvider", {"device_id": 1})],
     [("CUDAExecutionProvider", {"device_id": 1})]),
])
def test_provider_choice(monkeypatch, available, requested, chosen):
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: available)
    assert choose_providers(requested) == chosen


def test_an_unavailable_provider_is_an_error(monkeypatch):
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    with pytest.raises(ValueError, match=r"Expected ONNX Runtime providers from \['CPUExecutionProvider'\], "
                                         r"received \['CUDAExecutionProvider'\]"):
        choose_providers(["CUDAExecutionProvider"])
    with pytest.raises(ValueError, match="received \\[\\]"):
        choose_providers([])


def test_explicit_providers_reach_the_session(tmp_path):
    decoder = load_decoder(write_onnx(tmp_path / "decoder.onnx"), providers=["CPUExecutionProvider"])
    assert decoder.providers == ["CPUExecutionProvider"]


def test_files_that_are_not_decoders_are_refused(tmp_path):
    with pytest.raises(ValueError, match="Decoder file not found: .*missing.onnx"):
        load_decoder(tmp_path / "missing.onnx")
    (tmp_path / "model.keras").write_bytes(b"")
    with pytest.raises(ValueError, match="Expected a .onnx or .tflite decoder file, received .*model.keras"):
        load_decoder(tmp_path / "model.keras")
    bare = write_onnx(tmp_path / "bare.onnx", metadata=False)
    with pytest.raises(ValueError, match=r"lacks the decoder facts \['variant', .*python -m export RUN_DIR"):
        load_decoder(bare)
    (tmp_path / "decoder.tflite").write_bytes(b"")
    with pytest.raises(ValueError, match=r"needs its facts file .*decoder.tflite.json beside it"):
        load_decoder(tmp_path / "decoder.tflite")


def test_truncated_and_foreign_onnx_files_are_value_errors(tmp_path):
    data = open(write_onnx(tmp_path / "decoder.onnx"), "rb").read()
    for name, content in [("truncated.onnx", data[:len(data) // 2]), ("foreign.onnx", b"GIF89a" * 50),
                          ("empty.onnx", b"")]:
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ValueError, match=rf"{name} is not an ONNX model that ONNX Runtime can load "
                                             r"\(truncated, or another kind of file\?\)"):
            load_decoder(tmp_path / name)


def test_metadata_that_is_not_json_is_named(tmp_path):
    props = {k: json.dumps(v) for k, v in facts().items()}
    path = write_onnx(tmp_path / "decoder.onnx", metadata={**props, "latent_dim": "four"})
    with pytest.raises(ValueError, match=r"decoder.onnx's metadata `latent_dim` is not JSON \(Expecting value.*\): "
                                         r"re-export the decoder with `python -m export RUN_DIR`\."):
        load_decoder(path)


def test_a_graph_whose_inputs_differ_from_its_facts_is_refused(tmp_path):
    props = {k: json.dumps(v) for k, v in facts(conditional=True).items()}
    path = write_onnx(tmp_path / "decoder.onnx", conditional=False, metadata=props)
    with pytest.raises(ValueError, match=r"takes inputs \['z'\] and gives \['mean'\], which do not match its facts"):
        load_decoder(path)


@pytest.fixture
def tflite_copy(tmp_path):
    """The bundled cvae's TFLite decoder and its facts, copied to be damaged."""
    bundle = os.path.join(ROOT, "zoo", "pretrained", "cvae-mnist5k")
    for name in ("decoder.tflite", "decoder.tflite.json"):
        shutil.copy(os.path.join(bundle, name), tmp_path / name)
    return tmp_path / "decoder.tflite"


def test_truncated_and_foreign_tflite_files_are_value_errors(tflite_copy):
    assert load_decoder(tflite_copy).decode(np.zeros((2, 16)), [0, 1]).shape == (2, 28, 28, 1)
    data = tflite_copy.read_bytes()
    for content in (data[:len(data) // 2], b"GIF89a" * 50):
        tflite_copy.write_bytes(content)
        with pytest.raises(ValueError, match=r"decoder.tflite is not a TFLite model that LiteRT can load "
                                             r"\(truncated, or another kind of file\?\)"):
            load_decoder(tflite_copy)
    tflite_copy.write_bytes(data)
    (tflite_copy.parent / "decoder.tflite.json").write_text("{'variant': 'cvae'}")
    with pytest.raises(ValueError, match=r"decoder.tflite.json is not JSON \(Expecting property name"):
        load_decoder(tflite_copy)


@pytest.mark.parametrize("module, extension, package", [("ai_edge_litert", "tflite", "ai-edge-litert"),
                                                        ("onnxruntime", "onnx", "onnxruntime")])
def test_a_missing_runtime_says_what_to_install(tmp_path, tflite_copy, monkeypatch, module, extension, package):
    path = write_onnx(tmp_path / "decoder.onnx") if extension == "onnx" else tflite_copy
    for name in [name for name in sys.modules if name.split(".")[0] == module]:
        monkeypatch.setitem(sys.modules, name, None)  # None in sys.modules: `import` fails as if not installed
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ModuleNotFoundError, match=rf"Loading .*decoder.{extension} needs {module}.*, which is not "
                                                  rf"installed: pip install {package}"):
        load_decoder(path)


def test_importing_the_runtime_leaves_tensorflow_out(tmp_path):
    path = write_onnx(tmp_path / "decoder.onnx")
    code = ("import sys, numpy as np; from export.runtime import load_decoder; "
            f"load_decoder({path!r}).generate(2, labels=0, seed=0); "
            "heavy = sorted(m for m in ('tensorflow', 'keras', 'tf_keras', 'tensorflow_probability', 'zoo') "
            "if m in sys.modules); print(heavy)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_generate_app_leaves_tensorflow_out():
    code = ("import runpy, sys; runpy.run_path(sys.argv[1]); "
            "print(sorted(m for m in ('tensorflow', 'keras', 'tensorflow_probability', 'matplotlib') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code, os.path.join(ROOT, "apps", "generate.py")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def read_grey_png(path):
    """Pixels of an 8-bit grey PNG with unfiltered rows (what apps/generate.py writes)."""
    with open(path, "rb") as f:
        data = f.read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, pos = {}, 8
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunks[kind] = chunks.get(kind, b"") + data[pos + 8:pos + 8 + length]
        pos += 12 + length
    width, height, depth, color = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (depth, color) == (8, 0) and b"IEND" in chunks
    rows = np.frombuffer(zlib.decompress(chunks[b"IDAT"]), np.uint8).reshape(height, width + 1)
    assert not rows[:, 0].any()  # filter type 0
    return rows[:, 1:]


def test_generate_app_writes_one_row_per_class(tmp_path):
    path = write_onnx(tmp_path / "decoder.onnx")
    app = [sys.executable, os.path.join(ROOT, "apps", "generate.py"), path]
    result = subprocess.run([*app, "0", "2", "--per-class", "3", "--seed", "5", "--scale", "1",
                             "--out", str(tmp_path / "grid.png")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    pixels = read_grey_png(tmp_path / "grid.png")
    assert pixels.shape == (2 * (2 + 2) + 2, 3 * (2 + 2) + 2)  # 2 rows x 3 images of 2x2, 2-pixel gaps
    images = load_decoder(path).generate(6, labels=[0, 0, 0, 2, 2, 2], seed=5)
    np.testing.assert_array_equal(pixels[2:4, 2:4], np.round(images[0, ..., 0] * 255))
    np.testing.assert_array_equal(pixels[6:8, 10:12], np.round(images[5, ..., 0] * 255))
    bad = subprocess.run([*app, "7"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr == "error: Expected `labels` in [0, 2], received values in [7, 7].\n"
