"""Opening an exported file: its runtime (ONNX Runtime or LiteRT, imported on first use), its
facts (ONNX metadata or the TFLite sidecar JSON), and errors that say what to do."""

import importlib
import json
import os

from export.runtime.sessions import create_session

METADATA_SUFFIX = ".json"  # a TFLite file's facts live beside it: decoder.tflite -> decoder.tflite.json
RUNTIMES = {".onnx": ("onnxruntime", "onnxruntime (or onnxruntime-gpu)"),  # extension: (module, pip package)
            ".tflite": ("ai_edge_litert.interpreter", "ai-edge-litert")}


def open_file(path, providers, what):
    """`(path, run, facts, (input names, output names), providers)` of an exported `what` ("decoder",
    "encoder", "prior") file; `run(feeds, outputs=None)` returns `{name: array}` for the named
    outputs (all when None)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"{what.capitalize()} file not found: {path}.")
    if path.endswith(".onnx"):
        return path, *open_onnx(path, providers)
    if path.endswith(".tflite"):
        return path, *open_tflite(path), None
    raise ValueError(f"Expected a .onnx or .tflite {what} file, received {path}.")


def open_onnx(path, providers):
    onnxruntime = import_runtime(path)
    errors = onnxruntime.capi.onnxruntime_pybind11_state  # ONNX Runtime's own exception types
    try:
        session = create_session(onnxruntime, path, providers)
    except (errors.InvalidProtobuf, errors.InvalidArgument, errors.InvalidGraph, errors.NoModel, errors.Fail,
            errors.NotImplemented) as err:
        raise ValueError(f"{path} is not an ONNX model that ONNX Runtime can load (truncated, or another kind of "
                         f"file?): {err}") from err
    metadata = session.get_modelmeta().custom_metadata_map
    facts = {key: parse_facts(f"{path}'s metadata `{key}`", value) for key, value in metadata.items()}
    names = [spec.name for spec in session.get_inputs()], [spec.name for spec in session.get_outputs()]

    def run(feeds, outputs=None):
        outputs = list(outputs or names[1])
        return dict(zip(outputs, session.run(outputs, feeds)))

    return run, facts, names, session.get_providers()


def open_tflite(path):
    interpreter = import_runtime(path)
    sidecar = metadata_path(path)
    if not os.path.isfile(sidecar):
        raise ValueError(f"{path} needs its facts file {sidecar} beside it (written by `python -m export`).")
    with open(sidecar, "rb") as f:
        facts = parse_facts(sidecar, f.read())
    try:
        runner = interpreter.Interpreter(model_path=path).get_signature_runner()
    except (ValueError, RuntimeError) as err:
        raise ValueError(f"{path} is not a TFLite model that LiteRT can load (truncated, or another kind of "
                         f"file?): {err}") from err

    def run(feeds, outputs=None):
        results = runner(**feeds)
        return {name: results[name] for name in outputs} if outputs else results

    return run, facts, (list(runner.get_input_details()), list(runner.get_output_details()))


def metadata_path(path):
    """The sidecar JSON that holds a TFLite decoder's facts."""
    return path + METADATA_SUFFIX


def import_runtime(path):
    """The runtime module for `path`'s extension, or a ModuleNotFoundError saying what to install."""
    module, package = RUNTIMES[os.path.splitext(path)[1]]
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ModuleNotFoundError(f"Loading {path} needs {module}, which is not installed: pip install {package}.",
                                  name=module) from err


def parse_facts(source, text):
    """JSON from `source` (a sidecar file, or one metadata entry), or a ValueError that names it."""
    try:
        return json.loads(text)
    except ValueError as err:
        raise ValueError(f"{source} is not JSON ({err}): re-export the decoder with "
                         "`python -m export RUN_DIR`.") from err
