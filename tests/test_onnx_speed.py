"""The faster ONNX path: the export's graph passes (`export.onnx_graph`) and the CPU sessions
(`export.runtime.sessions`). Behaviour only: the rewritten graphs compute what the originals do,
the rewrites happen where they fit and nowhere else, and sessions get the options they are meant to.
Speed itself is measured by `benchmarks/export_latency.py`, not asserted here."""

import multiprocessing

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper

from export.onnx_graph import optimize
from export.runtime import sessions
from export.runtime.sessions import CHUNK, MIN_SPLIT, ChunkedSession, create_session

RNG = np.random.default_rng(0)
H, W, C = 4, 5, 6  # low-resolution side and channels of the upsampling graphs


def constant(name, array):
    return numpy_helper.from_array(np.asarray(array), name)


def save(tmp_path, nodes, inputs, outputs, initializers, name="model.onnx"):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    path = str(tmp_path / name)
    onnx.save(model, path)
    return path


def upsample_then_conv(tmp_path, tile=(1, 1, 2, 1, 2, 1), kernel=3):
    """NHWC x [B, H, W, C] -> nearest 2x upsampling spelled as tf2onnx spells `UpSampling2D`'s
    repeat (Reshape, Tile, Reshape, with a batch size read by Shape) -> Transpose to NCHW -> Conv.
    Another `tile` makes it something else (a Tile that repeats the whole image)."""
    nodes = [helper.make_node("Shape", ["x"], ["shape"]),
             helper.make_node("Gather", ["shape", "zero"], ["batch"], axis=0),
             helper.make_node("Concat", ["batch", "big_hwc"], ["big_shape"], axis=0),
             helper.make_node("Reshape", ["x", "split_shape"], ["split"]),
             helper.make_node("Tile", ["split", "repeats"], ["tiled"]),
             helper.make_node("Reshape", ["tiled", "big_shape"], ["big"]),
             helper.make_node("Transpose", ["big"], ["nchw"], perm=[0, 3, 1, 2]),
             helper.make_node("Conv", ["nchw", "w", "b"], ["y"], kernel_shape=[kernel, kernel],
                              pads=[kernel // 2] * 4)]
    initializers = [constant("zero", np.array([0], np.int64)),
                    constant("big_hwc", np.array([2 * H, 2 * W, C], np.int64)),
                    constant("split_shape", np.array([-1, H, 1, W, 1, C], np.int64)),
                    constant("repeats", np.array(tile, np.int64)),
                    constant("w", RNG.standard_normal((7, C, kernel, kernel)).astype(np.float32)),
                    constant("b", RNG.standard_normal(7).astype(np.float32))]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", H, W, C])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 7, 2 * H, 2 * W])
    return save(tmp_path, nodes, [x], [y], initializers)


def conv(tmp_path, c_in, c_out, kernel=3, **attrs):
    """x [B, c_in, 8, 8] -> Conv (pads 1, or `attrs`) -> y."""
    attrs = {"kernel_shape": [kernel, kernel], "pads": [kernel // 2] * 4, **attrs}
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["y"], **attrs)]
    fan_in = c_in * kernel * kernel  # trained-like scale: outputs of order 1, as in a decoder
    weight = RNG.standard_normal((c_out, c_in, kernel, kernel)) / fan_in**0.5
    initializers = [constant("w", weight.astype(np.float32)),
                    constant("b", RNG.standard_normal(c_out).astype(np.float32))]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", c_in, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", c_out, "height", "width"])
    return save(tmp_path, nodes, [x], [y], initializers)


def optimized(path):
    out = path.replace(".onnx", ".optimized.onnx")
    model = optimize(onnx.load(path))
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, out)
    return out


def ops(path):
    return [node.op_type for node in onnx.load(path).graph.node]


def outputs(path, x):
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def assert_same_outputs(original, rewritten, shape, atol=1e-5):
    for batch in (1, 5):
        x = RNG.standard_normal((batch, *shape)).astype(np.float32)
        np.testing.assert_allclose(outputs(rewritten, x), outputs(original, x), rtol=0, atol=atol)


def test_a_nearest_upsampling_in_many_nodes_becomes_one_resize(tmp_path):
    path = upsample_then_conv(tmp_path)
    faster = optimized(path)
    assert ops(faster) == ["Transpose", "Resize", "Conv"]  # Shape, Gather, Concat, Reshape, Tile gone
    assert onnx.load(faster).graph.node[0].input == ["x"]  # the Transpose to NCHW moved to the small image
    assert_same_outputs(path, faster, (H, W, C), atol=0)  # the same pixels reach the same Conv


def test_a_tile_that_is_not_a_nearest_upsampling_is_left_alone(tmp_path):
    path = upsample_then_conv(tmp_path, tile=(1, 2, 1, 2, 1, 1))  # shapes fit, pixels do not: [a b a b]
    assert ops(optimized(path)) == ops(path)


def test_a_conv_with_few_outputs_is_split_into_taps_and_picks(tmp_path):
    path = conv(tmp_path, c_in=32, c_out=2)  # 3*3*2 = 18 <= 32 input channels
    faster = optimized(path)
    nodes = onnx.load(faster).graph.node
    assert [node.op_type for node in nodes] == ["Conv", "Conv"]
    kernels = {init.name: init.dims for init in onnx.load(faster).graph.initializer}
    assert [list(kernels[node.input[1]]) for node in nodes] == [[18, 32, 1, 1], [2, 9, 3, 3]]
    assert_same_outputs(path, faster, (32, 8, 8))


@pytest.mark.parametrize("c_in, c_out, attrs", [
    (16, 2, {}),                                   # 18 tap channels > 16 inputs: no cheaper
    (32, 1, {"strides": [2, 2]}),                  # strided
    (32, 1, {"dilations": [2, 2], "pads": [2, 2, 2, 2]}),
    (32, 1, {"kernel": 1, "pads": [0, 0, 0, 0]}),  # already one tap
])
def test_other_convs_are_left_alone(tmp_path, c_in, c_out, attrs):
    path = conv(tmp_path, c_in, c_out, **attrs)
    assert onnx.load(optimized(path)).graph.initializer[0].dims == onnx.load(path).graph.initializer[0].dims
    assert ops(optimized(path)) == ["Conv"]


def test_a_keras_resnet_decoder_exports_without_tiles_and_the_same_outputs(tmp_path):
    """The real thing: tf2onnx's spelling of `UpSampling2D` in the zoo's resnet decoder."""
    keras = pytest.importorskip("keras")
    from export.to_onnx import write_onnx
    from zoo import networks

    net = networks.decoder(4, (16, 16, 1), backbone="resnet", width=8)
    latent = keras.Input((4,), name="z")
    model = keras.Model(latent, net(latent))
    path = str(tmp_path / "decoder.onnx")
    write_onnx(model, path, facts={})
    assert {"Resize"} <= set(ops(path)) and not {"Tile", "Unsqueeze", "ConvTranspose"} & set(ops(path))
    z = RNG.standard_normal((3, 4)).astype(np.float32)
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"z": z})[0], keras.ops.convert_to_numpy(model(z)), atol=1e-5)


def per_item_model(tmp_path, reduce_batch=False):
    """x [batch, 3] -> y = x @ M [batch, 2] (each row on its own), or, with `reduce_batch`, the sum
    over the batch (a graph whose output has no batch axis)."""
    nodes = [helper.make_node("MatMul", ["x", "m"], ["y"])]
    shape = ["batch", 2]
    if reduce_batch:
        nodes = [helper.make_node("MatMul", ["x", "m"], ["rows"]),
                 helper.make_node("ReduceSum", ["rows", "axes"], ["y"], keepdims=0)]
        shape = [2]
    initializers = [constant("m", RNG.standard_normal((3, 2)).astype(np.float32))]
    initializers += [constant("axes", np.array([0]))] if reduce_batch else []
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)
    return save(tmp_path, nodes, [x], [y], initializers, name="sum.onnx" if reduce_batch else "rows.onnx")


class Spy:
    """Wraps a session and records the batch size of every `run`."""

    def __init__(self, session):
        self.session, self.batches = session, []

    def run(self, names, feeds, run_options=None):
        self.batches.append(len(next(iter(feeds.values()))))
        return self.session.run(names, feeds, run_options)


def test_a_cpu_session_runs_a_large_batch_in_chunks_on_a_single_threaded_session(tmp_path):
    path = per_item_model(tmp_path)
    session = create_session(onnxruntime, path, ["CPUExecutionProvider"])
    assert isinstance(session, ChunkedSession) and session.get_providers() == ["CPUExecutionProvider"]
    options = session.get_session_options()
    assert options.graph_optimization_level == onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert options.intra_op_num_threads == 0  # ONNX Runtime's default: a thread per physical core
    whole = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    x = RNG.standard_normal((2 * CHUNK + 3, 3)).astype(np.float32)
    expected = whole.run(None, {"x": x})[0]

    small = Spy(session._session)
    session._session = small
    np.testing.assert_array_equal(session.run(None, {"x": x[:MIN_SPLIT - 1]})[0], expected[:MIN_SPLIT - 1])
    assert small.batches == [MIN_SPLIT - 1] and session._single is None  # no second session until needed

    (y,) = session.run(["y"], {"x": x})
    single, _ = session._single_threaded()
    assert single.get_session_options().intra_op_num_threads == 1
    np.testing.assert_allclose(y, expected, rtol=1e-6)
    spy = Spy(single)
    session._single = spy
    session.run(["y"], {"x": x})
    assert sorted(spy.batches) == [3, CHUNK, CHUNK] and small.batches == [MIN_SPLIT - 1]


def test_a_graph_whose_output_has_no_batch_axis_runs_whole(tmp_path):
    path = per_item_model(tmp_path, reduce_batch=True)
    session = create_session(onnxruntime, path, ["CPUExecutionProvider"])
    x = RNG.standard_normal((3 * CHUNK, 3)).astype(np.float32)
    whole = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"x": x})[0], whole.run(None, {"x": x})[0], rtol=1e-6)
    assert session._single is None


class FakeOnnxRuntime:
    """Stands in for an onnxruntime build with CUDA, whose session lands on the GPU."""

    SessionOptions, GraphOptimizationLevel, ExecutionMode = (onnxruntime.SessionOptions,
                                                             onnxruntime.GraphOptimizationLevel,
                                                             onnxruntime.ExecutionMode)

    def __init__(self):
        self.sessions = []

    def get_available_providers(self):
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]

    def InferenceSession(self, path, options, providers):  # noqa: N802 - onnxruntime's name
        session = type("Session", (), {"get_providers": lambda self: list(providers)})()
        self.sessions.append((path, options, providers, session))
        return session


def test_a_cuda_session_is_one_plain_session_with_the_same_options(monkeypatch):
    fake = FakeOnnxRuntime()
    monkeypatch.setattr(onnxruntime, "get_available_providers", fake.get_available_providers)
    session = create_session(fake, "decoder.onnx")
    ((path, options, providers, made),) = fake.sessions
    assert session is made and not isinstance(session, ChunkedSession)
    assert providers == ["CUDAExecutionProvider", "CPUExecutionProvider"] and path == "decoder.onnx"
    assert options.graph_optimization_level == onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert options.intra_op_num_threads == 0  # nothing CPU-specific forced on a GPU session


def test_chunks_run_on_as_many_threads_as_the_process_has_cpus(tmp_path, monkeypatch):
    monkeypatch.setattr(sessions, "cpu_threads", lambda: 3)
    session = create_session(onnxruntime, per_item_model(tmp_path), ["CPUExecutionProvider"])
    assert session.threads == 3
    session.run(None, {"x": np.zeros((MIN_SPLIT, 3), np.float32)})
    assert session._single_threaded()[1]._max_workers == 3


def _run_in(session, x, queue):
    queue.put(session.run(None, {"x": x})[0])


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs the fork start method")
def test_a_forked_child_runs_chunks_on_its_own_thread_pool(tmp_path):
    """A forked child inherits the pool object but not its threads; before the pool was remade
    there, its first chunked run waited forever."""
    session = create_session(onnxruntime, per_item_model(tmp_path), ["CPUExecutionProvider"])
    x = RNG.standard_normal((2 * CHUNK, 3)).astype(np.float32)
    expected = session.run(None, {"x": x})[0]  # the parent's pool now exists
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_run_in, args=(session, x, queue))
    child.start()
    child.join(timeout=20)
    hung = child.is_alive()
    child.kill()
    assert not hung and child.exitcode == 0
    np.testing.assert_array_equal(queue.get(timeout=5), expected)
