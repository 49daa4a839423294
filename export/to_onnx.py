"""Serving decoder -> ONNX, through Keras' exporter (tf2onnx underneath)."""

import json
import warnings

import onnx

from export.onnx_graph import optimize
from export.serving import input_signature

OPSET = 17  # ONNX Runtime 1.14+ and onnxruntime-web run it
BATCH = "batch"


def write_onnx(decoder, path, facts):
    """Exports `decoder` to `path` with a dynamic batch axis and the facts in `metadata_props`.

    tf2onnx names the unknown batch dimension `unk__N` per tensor; it is renamed `batch` on every
    input and output, which tells runtimes (and readers in Netron) that they share one batch size.
    The graph then goes through `export.onnx_graph.optimize` (upsampling as one Resize, small
    output convolutions split by tap), which keeps its outputs to float32 rounding.

    Raises:
        onnx.checker.ValidationError: the exported graph is not valid ONNX.
    """
    with warnings.catch_warnings():  # Keras' tf2onnx shim probes the removed `np.object`
        warnings.filterwarnings("ignore", message=".*np.object", category=FutureWarning)
        decoder.export(path, format="onnx", input_signature=input_signature(decoder), opset_version=OPSET,
                       verbose=False)
    graph_model = optimize(onnx.load(path))
    for value in [*graph_model.graph.input, *graph_model.graph.output]:
        batch_dim = value.type.tensor_type.shape.dim[0]
        batch_dim.ClearField("dim_value")
        batch_dim.dim_param = BATCH
    onnx.helper.set_model_props(graph_model, {key: json.dumps(value) for key, value in
                                              {**facts, "opset": OPSET}.items()})
    onnx.checker.check_model(graph_model, full_check=True)
    onnx.save(graph_model, path)
