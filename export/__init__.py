"""Export a run's decoder to ONNX and TFLite, check parity, and run it without TensorFlow.

    python -m export runs/cvae --formats onnx,tflite,tflite-fp16,tflite-int8

    from export import export_run                   # TensorFlow side: convert and check
    from export.runtime import load_decoder         # app side: numpy + onnxruntime / LiteRT only

Importing this package imports nothing heavy: `export.runtime` must stay TensorFlow-free, and
Python imports a package's `__init__` before any of its modules, so the TensorFlow side is loaded
only when `export_run`, `parse_formats` or `FORMATS` is first used.
"""

_PIPELINE = ("export_run", "parse_formats", "FORMATS")


def __getattr__(name):
    if name in _PIPELINE:
        from export import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'export' has no attribute '{name}'")


__all__ = list(_PIPELINE)
