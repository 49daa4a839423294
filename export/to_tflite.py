"""Serving decoder -> TFLite (fp32, fp16 weights, int8 dynamic range, full int8), through Keras'
LiteRT exporter, which passes converter options on to `tf.lite.TFLiteConverter`.

Only built-in TFLite ops are allowed (no Flex/Select TF ops), so a decoder that needs one fails
to convert instead of producing a file the plain LiteRT interpreter cannot run. The batch axis
stays dynamic (`shape_signature` -1): the interpreter resizes it at run time.
"""

import json
import warnings

import tensorflow as tf

from export.runtime import metadata_path, sample_inputs
from export.serving import input_signature

QUANTIZATIONS = ("none", "fp16", "int8-dynamic", "int8")
CALIBRATION_BATCHES, CALIBRATION_BATCH_SIZE = 8, 32


def write_tflite(decoder, path, facts, quantization="none"):
    """Exports `decoder` to `path` (a `.tflite` file) and its facts to the sidecar `<path>.json`.

    Args:
        decoder: a serving decoder (`export.serving.serving_decoder`).
        path: the `.tflite` file to write.
        facts: `export.metadata.decoder_facts`; `quantization` is added to them.
        quantization: "none" (fp32); "fp16" (float16 weights, float32 compute on CPU);
            "int8-dynamic" (int8 weights, float activations); "int8" (int8 weights and
            activations, calibrated on inputs drawn from the prior; float32 in and out).

    Raises:
        ValueError: an unknown `quantization`.
        tf.lite ConverterError: the decoder needs an op outside the TFLite built-ins.
    """
    options = converter_options(quantization, facts)
    with warnings.catch_warnings():  # calibration runs TF's own deprecated tf.lite.Interpreter
        warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
        decoder.export(path, format="litert", input_signature=input_signature(decoder), verbose=False, **options)
    with open(metadata_path(path), "w") as f:
        json.dump({**facts, "quantization": quantization}, f, indent=2)


def converter_options(quantization, facts):
    """`tf.lite.TFLiteConverter` attributes for one quantization mode."""
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"Unknown quantization '{quantization}': expected one of {QUANTIZATIONS}.")
    builtins = {"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS]}
    if quantization == "none":
        return {"target_spec": builtins}
    if quantization == "fp16":
        return {"optimizations": [tf.lite.Optimize.DEFAULT],
                "target_spec": {**builtins, "supported_types": [tf.float16]}}
    # One scale per dense layer, not one per output unit: the per-unit scales and int64 zero points
    # of the decoder's wide first layer (7*7*64 units) add a third to an int8 file, for no
    # measurable gain in parity.
    options = {"optimizations": [tf.lite.Optimize.DEFAULT], "target_spec": builtins,
               "_experimental_disable_per_channel_quantization_for_dense_layers": True}
    if quantization == "int8":  # built-in int8 kernels only: an op without one fails the conversion
        options.update(target_spec={"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]},
                       representative_dataset=lambda: calibration_inputs(facts))
    return options


def calibration_inputs(facts):
    """Yields the representative inputs of full-integer quantization: latents drawn from the
    model's prior (N(0, I) for most), uniform labels or codes, with a fixed seed."""
    for seed in range(CALIBRATION_BATCHES):
        yield sample_inputs(facts, CALIBRATION_BATCH_SIZE, seed=seed)
