"""Run exported models with numpy and ONNX Runtime or the LiteRT interpreter: no TensorFlow.

This module is what apps ship with. It imports only numpy at import time; `onnxruntime` or
`ai_edge_litert` is imported when a file of that kind is loaded, so an app needs only the one it
uses. It must never import TensorFlow (a test checks `sys.modules` in a fresh interpreter).

`decode` and `generate` run the model on at most `batch_size` images at a time and write each
batch into one preallocated output, so memory beyond the returned images does not grow with n.

Example:
    from export.runtime import load_decoder

    decoder = load_decoder("runs/cvae/decoder.onnx")       # CUDA first when present, else CPU
    sevens = decoder.generate(16, labels=7, seed=0)         # [16, 28, 28, 1] in [0, 1]
    digits = load_decoder("runs/vqvae-pixelcnn/decoder.onnx").generate(16, seed=0)  # codes from prior.onnx
    same = decoder.decode(z, labels=[7] * len(z))           # z: float [B, latent_dim]
    cats = decoder.generate(8, labels=decoder.class_names.index("cat"))  # a run whose classes are named

    from export.runtime import load_model

    model = load_model("runs/cvae")                         # encoder.onnx + decoder.onnx
    odd = model.outlier_score(x)                            # higher = less like the training data
"""

from export.runtime.complexity import complexity_bits, png_bytes
from export.runtime.decoder import CHUNK_VALUES, Decoder, load_decoder, sample_inputs
from export.runtime.encoder import Encoder, load_encoder
from export.runtime.files import metadata_path
from export.runtime.inputs import check_input
from export.runtime.model import Model, load_model
from export.runtime.prior import Prior, load_prior, sample_codes, sample_prior
from export.runtime.sessions import choose_providers

__all__ = ["CHUNK_VALUES", "Decoder", "Encoder", "Model", "Prior", "check_input", "choose_providers", "complexity_bits",
           "load_decoder", "load_encoder", "load_model", "load_prior", "metadata_path", "png_bytes", "sample_codes",
           "sample_inputs", "sample_prior"]
