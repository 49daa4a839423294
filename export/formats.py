"""The export formats: the file each writes, how, and the parity it must reach.

Tolerances are on the `mean` images (in [0, 1]) against the SavedModel's `decode` signature.
Float formats are held to their max abs error. Quantized int8 files are expected to differ per
pixel, so they are held to their mean abs error instead (0.05, about 13 grey levels of 255), and
the report adds their PSNR.
"""

import dataclasses
import importlib


@dataclasses.dataclass(frozen=True)
class Format:
    """One export format.

    Attributes:
        filename: the file written into the run directory.
        write: `write(serving_decoder, path, facts)`.
        metric: "max_abs" or "mean_abs", the parity error held against `tolerance`.
        tolerance: the largest acceptable error; a file above it is deleted.
    """

    filename: str
    write: callable
    metric: str
    tolerance: float


def _writer(name, **options):
    """`export.to_<name>.write_<name>` with `options`, imported at the first call: listing the
    formats (`python -m export --help`) loads no TensorFlow."""
    return lambda *args: getattr(importlib.import_module(f"export.to_{name}"), f"write_{name}")(*args, **options)


FORMATS = {
    "onnx": Format("decoder.onnx", _writer("onnx"), "max_abs", 1e-5),
    "tflite": Format("decoder.tflite", _writer("tflite", quantization="none"), "max_abs", 1e-4),
    "tflite-fp16": Format("decoder.fp16.tflite", _writer("tflite", quantization="fp16"), "max_abs", 1e-2),
    "tflite-int8-dynamic": Format("decoder.int8-dynamic.tflite", _writer("tflite", quantization="int8-dynamic"),
                                  "mean_abs", 0.05),
    "tflite-int8": Format("decoder.int8.tflite", _writer("tflite", quantization="int8"), "mean_abs", 0.05),
}

# A vqvae's PixelCNN prior (code grid -> logits of every position), written beside the decoder in the
# same format: prior.onnx with "onnx", prior.tflite with any TFLite format. Held to the max abs error
# of its logits against the Keras network.
PRIOR_FORMATS = {
    "prior-onnx": Format("prior.onnx", _writer("onnx"), "max_abs", 1e-4),
    "prior-tflite": Format("prior.tflite", _writer("tflite", quantization="none"), "max_abs", 1e-3),
}


# The encoder (`--parts decoder,encoder`): encoder.onnx with "onnx", the fp32 encoder.tflite with any
# TFLite format. Held to the decoder's float tolerances, on every output (loc and scale, z, codes),
# relative to the output's magnitude beyond 1 (`export.parity.check_encoder`).
ENCODER_FORMATS = {
    "encoder-onnx": Format("encoder.onnx", _writer("onnx"), "max_rel", 1e-5),
    "encoder-tflite": Format("encoder.tflite", _writer("tflite", quantization="none"), "max_rel", 1e-4),
}


def companion_formats(part, formats):
    """The formats of `part` ("prior", "encoder") that go with the decoder `formats` (names of
    `FORMATS`): `<part>-onnx` with "onnx", `<part>-tflite` with any TFLite format."""
    return [f"{part}-{kind}" for kind, wanted in (("onnx", "onnx" in formats),
                                                  ("tflite", any(f.startswith("tflite") for f in formats))) if wanted]
