"""ONNX Runtime sessions: which execution providers, and with which options.

On the CPU a session is two, for two jobs (measured with `benchmarks/export_latency.py`):
- a small batch runs whole on a session with ONNX Runtime's default threads (one per physical
  core, spinning between ops), which parallelises each op: the lowest latency for one image;
- a large batch is cut into chunks of `CHUNK` items, run concurrently from `threads` Python
  threads on a second, single-threaded session (made on first use). Whole images in parallel scale
  better than one op at a time on two threads (many ops are too small to split well), and a chunk's
  activations stay in cache (one 28x28 decoder gained about 20% on one thread).
Results are the same either way: every exported graph computes each batch item on its own (the
batch axis is one symbolic `batch` dimension on every input and output), and the chunks are joined
in order. A session on CUDA is one session, run on whole batches.
"""

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

PREFERRED_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")
CHUNK = 16  # items per single-threaded run of a large batch
MIN_SPLIT = 8  # batches below this run whole on the multi-threaded session


def create_session(onnxruntime, path, providers=None):
    """An ONNX Runtime session for `path` on `choose_providers(providers)`: a `ChunkedSession` when
    it runs on the CPU alone, else the `onnxruntime.InferenceSession` itself."""
    session = onnxruntime.InferenceSession(path, session_options(onnxruntime), providers=choose_providers(providers))
    if session.get_providers() != ["CPUExecutionProvider"]:
        return session
    single = lambda: onnxruntime.InferenceSession(path, session_options(onnxruntime, threads=1),
                                                  providers=["CPUExecutionProvider"])
    return ChunkedSession(session, single)


def session_options(onnxruntime, threads=None):
    """All graph optimisations; `threads` intra-op threads (None: ONNX Runtime's default, one per
    physical core). Nothing here is specific to a provider, so CUDA sessions take the same."""
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL  # a decoder is one chain of ops
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return options


def cpu_threads():
    """The CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class ChunkedSession:
    """A CPU session that runs a large batch as chunks in parallel threads (see the module
    docstring); everything else (`get_inputs`, `get_modelmeta`, `get_providers`, ...) is the
    multi-threaded session's.

    Attributes:
        threads: how many chunks run at once (the CPUs this process may use).
        chunk: items per chunk.
    """

    def __init__(self, session, make_single_threaded, threads=None, chunk=CHUNK):
        self._session, self._make_single = session, make_single_threaded
        self.threads, self.chunk = threads or cpu_threads(), chunk
        self._single, self._pool, self._pid, self._lock = None, None, None, threading.Lock()
        self._leading = {value.name: _leading_dim(value) for value in [*session.get_inputs(), *session.get_outputs()]}
        self._outputs = [value.name for value in session.get_outputs()]

    def run(self, output_names, input_feed, run_options=None):
        """`InferenceSession.run`: whole when the batch is small or not shared by every input and
        requested output, else in chunks, joined in order."""
        batch = self._batch_size(output_names, input_feed)
        if batch < MIN_SPLIT or run_options is not None:
            return self._session.run(output_names, input_feed, run_options)
        single, pool = self._single_threaded()
        chunks = [{name: value[start:start + self.chunk] for name, value in input_feed.items()}
                  for start in range(0, batch, self.chunk)]
        results = list(pool.map(lambda feed: single.run(output_names, feed), chunks))
        return [np.concatenate(parts) for parts in zip(*results)]

    def _batch_size(self, output_names, input_feed):
        """The feeds' common length when every input and requested output has the same symbolic
        leading dimension, else 0."""
        lengths = {len(value) if np.ndim(value) else 0 for value in input_feed.values()}
        if len(lengths) != 1 or max(lengths) < MIN_SPLIT:
            return 0
        dims = {self._leading.get(name) for name in [*input_feed, *(output_names or self._outputs)]}
        return lengths.pop() if len(dims) == 1 and None not in dims else 0

    def _single_threaded(self):
        """The single-threaded session and the thread pool, made on first use, and again in a
        forked child process (which inherits the pool without its threads)."""
        with self._lock:
            if self._single is None or self._pid != os.getpid():
                self._single = self._make_single()
                self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="onnxruntime-chunk")
                self._pid = os.getpid()
        return self._single, self._pool

    def __getattr__(self, name):
        return getattr(self._session, name)


def _leading_dim(value):
    """The symbolic name of a value's first dimension, or None (no dims, or a fixed size)."""
    shape = value.shape
    return shape[0] if shape and isinstance(shape[0], str) else None


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
