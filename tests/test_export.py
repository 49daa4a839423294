"""python -m export on tiny runs: every format against the SavedModel, metadata, the CLI, and the
serving-decoder hook for decoders that take codes.

Runs are written with zoo.artifacts from untrained tiny models (no training): parity does not need
a good decoder, only the same one on both sides.
"""

import dataclasses
import json
import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import onnx
import pytest
import tensorflow as tf

import zoo
from conftest import write_run
from export import formats, parity, pipeline
from export.__main__ import main
from export.runtime import load_decoder, sample_inputs
from zoo import artifacts
from zoo.models.vae import VAE

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FORMATS = list(formats.FORMATS)
CLASS_NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def tiny(name, **kwargs):
    return zoo.create(name, input_shape=(28, 28, 1), latent_dim=4, width=8, hidden=32, **kwargs)


def saved_model_mean(run, inputs):
    return parity.reference_decoder(os.path.join(run, "saved_model"))(inputs)


@pytest.fixture(scope="module")
def cvae_run(tmp_path_factory):
    """A tiny conditional run, whose manifest names its classes, exported in every format once;
    tests read it, never change it."""
    run = write_run(str(tmp_path_factory.mktemp("cvae")), tiny("cvae", num_classes=10), "cvae",
                    dataset={"name": "folder", "class_names": CLASS_NAMES})
    return run, pipeline.export_run(run, FORMATS, print_fn=lambda *a, **k: None)


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    """An unconditional VAE with a Gaussian likelihood and a learned mixture prior."""
    model = tiny("vae", likelihood="gaussian", prior="mog", prior_components=3)
    run = write_run(str(tmp_path_factory.mktemp("vae")), model, "vae")
    pipeline.export_run(run, ["onnx", "tflite"], print_fn=lambda *a, **k: None)
    return run, model


def test_every_format_is_written_checked_and_recorded(cvae_run):
    run, report = cvae_run
    manifest = artifacts.read_manifest(run)
    assert set(report) == set(FORMATS) and manifest["export"] == report
    for name, fmt in formats.FORMATS.items():
        entry = report[name]
        assert entry["passed"] and entry[fmt.metric] <= fmt.tolerance, (name, entry)
        assert entry["batch_sizes"] == [1, 33] and (entry["psnr_db"] is None or entry["psnr_db"] > 20)
        assert artifacts.verify(run, fmt.filename) and manifest["artifacts"][fmt.filename]["sha256"] == entry["sha256"]
    assert not os.path.exists(os.path.join(run, pipeline.STAGING))


@pytest.mark.parametrize("variant", zoo.list_models())
def test_every_registered_variant_exports_to_onnx(variant, tmp_path):
    model = tiny(variant, **({"num_classes": 10} if zoo.get_class(variant).conditional else {}))
    run = write_run(str(tmp_path), model, variant)
    report = pipeline.export_run(run, ["onnx"], print_fn=lambda *a, **k: None)
    assert report["onnx"]["passed"], report
    decoder = load_decoder(os.path.join(run, "decoder.onnx"))
    assert (decoder.variant, decoder.output_shape) == (variant, (28, 28, 1))
    assert decoder.class_names is None  # the manifest names no classes
    if variant == "ae":
        assert decoder.facts["prior"] is None
    else:
        assert decoder.generate(2, labels=[0, 1] if decoder.num_classes else None, seed=0).shape == (2, 28, 28, 1)


def test_a_broadcast_decoder_exports_to_onnx_and_builtin_tflite(tmp_path):
    model = tiny("beta_vae", broadcast_decoder=True)
    run = write_run(str(tmp_path), model, "beta_vae")
    report = pipeline.export_run(run, ["onnx", "tflite"], print_fn=lambda *a, **k: None)
    assert report["onnx"]["passed"] and report["tflite"]["passed"], report
    assert zoo.load_model(run).broadcast_decoder  # model.keras reloads in safe mode
    for name in ("onnx", "tflite"):
        decoder = load_decoder(os.path.join(run, formats.FORMATS[name].filename))
        inputs = sample_inputs(decoder.facts, 3, seed=1)
        np.testing.assert_allclose(decoder.decode(inputs["z"]), saved_model_mean(run, inputs), atol=1e-4)


@pytest.mark.parametrize("name", FORMATS)
def test_each_file_matches_the_saved_model_at_another_batch_size(cvae_run, name):
    run, _ = cvae_run
    fmt = formats.FORMATS[name]
    decoder = load_decoder(os.path.join(run, fmt.filename))
    inputs = sample_inputs(decoder.facts, 7, seed=42)
    error = np.abs(decoder.decode(inputs["z"], inputs["labels"]) - saved_model_mean(run, inputs))
    assert {"max_abs": error.max(), "mean_abs": error.mean()}[fmt.metric] <= fmt.tolerance


def test_onnx_carries_its_facts_and_a_dynamic_batch(cvae_run):
    run, _ = cvae_run
    model = onnx.load(os.path.join(run, "decoder.onnx"))
    onnx.checker.check_model(model, full_check=True)
    props = {p.key: json.loads(p.value) for p in model.metadata_props}
    assert props["variant"] == "cvae" and props["latent_dim"] == 4 and props["num_classes"] == 10
    assert props["class_names"] == CLASS_NAMES
    assert load_decoder(os.path.join(run, "decoder.onnx")).class_names == CLASS_NAMES
    assert props["output_shape"] == [28, 28, 1] and props["opset"] == 17 and props["zoo_version"] == zoo.__version__
    assert props["inputs"] == [{"name": "z", "dtype": "float32", "shape": [4]},
                               {"name": "labels", "dtype": "int32", "shape": []}]
    assert props["outputs"] == ["logits", "mean"]
    assert props["prior"] == {"kind": "gaussian_mixture", "logits": [0.0], "loc": [[0.0] * 4], "scale": [[1.0] * 4]}
    assert {op.domain: op.version for op in model.opset_import}[""] == 17
    for value in [*model.graph.input, *model.graph.output]:
        assert value.type.tensor_type.shape.dim[0].dim_param == "batch"


def test_tflite_files_use_builtin_ops_and_carry_their_facts(cvae_run):
    from ai_edge_litert.interpreter import Interpreter

    run, report = cvae_run
    sizes = {}
    for name in ("tflite", "tflite-fp16", "tflite-int8-dynamic", "tflite-int8"):
        path = os.path.join(run, formats.FORMATS[name].filename)
        interpreter = Interpreter(model_path=path)
        ops = {op["op_name"] for op in interpreter._get_ops_details()}
        assert not any(op.startswith("Flex") or op == "CUSTOM" for op in ops), (name, ops)
        assert interpreter.get_input_details()[0]["shape_signature"][0] == -1  # resizable batch
        with open(path + ".json") as f:
            facts = json.load(f)
        assert facts["variant"] == "cvae" and facts["num_classes"] == 10 and facts["quantization"] in name + "none"
        assert load_decoder(path).class_names == CLASS_NAMES
        sizes[name] = report[name]["bytes"]
    int8_tensors = {d["dtype"] for d in Interpreter(model_path=os.path.join(run, "decoder.int8.tflite"))
                    .get_tensor_details()}
    assert np.int8 in int8_tensors  # activations too, not only weights
    assert sizes["tflite-int8"] < 0.6 * sizes["tflite"] and sizes["tflite-fp16"] < 0.6 * sizes["tflite"]


def test_int8_keeps_the_label_signal(tmp_path):
    """TFLite's full-integer ONE_HOT ignores its output scale; with labels weighted heavily in the
    first layer, a decoder built on it misses by far more than this bound."""
    model = tiny("cvae", num_classes=10)
    dense = model.decoder.layers[0]
    kernel, bias = dense.get_weights()
    kernel[model.latent_dim:] *= 20
    dense.set_weights([kernel, bias])
    run = write_run(str(tmp_path), model, "cvae")
    report = pipeline.export_run(run, ["tflite-int8"], print_fn=lambda *a, **k: None)
    assert report["tflite-int8"]["mean_abs"] < 0.005, report  # 0.018 with ONE_HOT


def test_unconditional_gaussian_decoder_with_a_learned_prior(vae_run):
    run, model = vae_run
    decoder = load_decoder(os.path.join(run, "decoder.onnx"))
    assert decoder.num_classes is None and decoder.facts["outputs"] == ["mean"]
    assert decoder.facts["class_names"] is None and decoder.class_names is None
    prior = model.prior()
    np.testing.assert_allclose(decoder.facts["prior"]["loc"], prior.components_distribution.distribution.loc,
                               rtol=1e-6)
    z = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    for path in ("decoder.onnx", "decoder.tflite"):
        np.testing.assert_allclose(load_decoder(os.path.join(run, path)).decode(z),
                                   saved_model_mean(run, {"z": z}), atol=1e-5)
    assert decoder.generate(3, seed=0).shape == (3, 28, 28, 1)


def test_a_file_over_its_tolerance_is_removed(cvae_run, tmp_path, monkeypatch, capsys):
    run = shutil.copytree(cvae_run[0], str(tmp_path / "run"))
    monkeypatch.setitem(formats.FORMATS, "onnx", dataclasses.replace(formats.FORMATS["onnx"], tolerance=0.0))
    assert main([run, "--formats", "onnx"]) == 1
    assert "error: onnx failed parity against the SavedModel" in capsys.readouterr().err
    assert not os.path.exists(os.path.join(run, "decoder.onnx"))
    manifest = artifacts.read_manifest(run)
    assert manifest["export"]["onnx"]["passed"] is False and "decoder.onnx" not in manifest["artifacts"]
    assert manifest["export"]["tflite"]["passed"]  # earlier formats stay recorded


def test_cli_refuses_bad_run_dirs_and_formats_in_one_line(tmp_path, cvae_run, capsys):
    assert main([str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err == f"error: Run directory not found: {tmp_path / 'nowhere'}.\n"
    assert main([cvae_run[0], "--formats", "onnx,tflite-int4"]) == 2
    assert "error: Unknown export format(s) ['tflite-int4']: expected names from onnx, tflite" in capsys.readouterr().err
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    result = subprocess.run([sys.executable, "-m", "export", str(unfinished)], capture_output=True, text=True,
                            cwd=ROOT, timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: {unfinished} is not a finished run")


def test_class_names_that_do_not_fit_the_model_are_refused(tmp_path, capsys):
    run = write_run(str(tmp_path / "run"), tiny("cvae", num_classes=10), "cvae",
                    dataset={"name": "folder", "class_names": ["cat", "dog"]})
    assert main([run, "--formats", "onnx"]) == 2
    assert capsys.readouterr().err.startswith("error: The manifest's dataset.class_names ['cat', 'dog'] is not a "
                                              "list of 10 names, one per class of the model")
    assert not os.path.exists(os.path.join(run, "decoder.onnx"))


def test_cli_help_lists_the_formats(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert "RUN_DIR" in text and all(f"{name} " in text for name in FORMATS) and "exit status" in text


@keras.saving.register_keras_serializable(package="tests")
class CodesVAE(VAE):
    """A stand-in for the VQ-VAE: `decode` takes int32 codes [B, 2, 2], looked up in a codebook of
    scalars, so the export must use the model's own `serving_decoder`."""

    num_codes = 8

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.codebook = keras.layers.Embedding(self.num_codes, 1, name="codebook")
        self.codebook.build((None,))

    def serving_endpoints(self):
        codes = tf.TensorSpec([None, 2, 2], tf.int32, name="codes")
        lookup = lambda codes: tf.reshape(self.codebook(codes), [-1, self.latent_dim])
        return {"decode": (lambda codes: {"mean": self.decode(lookup(codes)).mean()}, [codes])}

    def serving_decoder(self):
        codes = keras.Input((2, 2), dtype="int32", name="codes")
        raw = self.decoder(keras.layers.Reshape((self.latent_dim,))(self.codebook(codes)))
        return keras.Model({"codes": codes}, {"mean": keras.ops.sigmoid(raw), "logits": raw})


def test_a_model_can_supply_its_own_serving_decoder(tmp_path):
    model = CodesVAE(input_shape=(28, 28, 1), latent_dim=4, width=8, hidden=32)
    config = {**model.get_config(), "num_codes": CodesVAE.num_codes}
    run = write_run(str(tmp_path), model, "codes_toy", config=config)
    report = pipeline.export_run(run, ["onnx", "tflite"], print_fn=lambda *a, **k: None)
    assert all(entry["passed"] for entry in report.values())
    decoder = load_decoder(os.path.join(run, "decoder.tflite"))
    assert decoder.facts["inputs"] == [{"name": "codes", "dtype": "int32", "shape": [2, 2]}]
    assert decoder.facts["num_codes"] == 8 and decoder.facts["prior"] is None
    with pytest.raises(ValueError, match=r"Expected `codes` in \[0, 7\], received values in \[0, 9\]"):
        decoder.decode(np.array([[[0, 1], [2, 9]]]))
    with pytest.raises(ValueError, match="has no prior to draw latents from"):
        decoder.generate(1)
