"""ONNX Runtime sessions: which execution providers, and with which options."""

PREFERRED_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")


def create_session(onnxruntime, path, providers=None):
    """An `onnxruntime.InferenceSession` for `path` on `choose_providers(providers)`."""
    return onnxruntime.InferenceSession(path, providers=choose_providers(providers))


def choose_providers(providers=None):
    """ONNX Runtime execution providers: the explicit list when given, else CUDA (when this
    onnxruntime build has it) then CPU.

    Raises:
        ValueError: an explicit provider this onnxruntime build does not have.
    """
    import onnxruntime

    available = onnxruntime.get_available_providers()
    if providers is None:
        return [name for name in PREFERRED_PROVIDERS if name in available]
    names = [p[0] if isinstance(p, tuple) else p for p in providers]
    missing = [name for name in names if name not in available]
    if missing or not names:
        raise ValueError(f"Expected ONNX Runtime providers from {available}, received {names}.")
    return list(providers)
