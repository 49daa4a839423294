"""Graph passes run on an exported ONNX file, for ONNX Runtime's speed; each keeps the outputs to
float32 rounding.

- A nearest upsampling that tf2onnx spells in a dozen nodes (Keras' `UpSampling2D` becomes
  Unsqueeze, Tile, Transpose and Reshape twice, with a Shape/Slice/Concat chain for the dynamic
  batch) becomes one Resize. It is recognised by what it computes, not how it is spelled: the
  subgraph between a candidate low-resolution tensor and the Conv input is run on random numbers
  and must equal `np.repeat` exactly.
- A k x k Conv with few output channels (k*k*C_out <= C_in: the last layer of a conv decoder, 32
  channels to 1) becomes a 1x1 Conv to k*k*C_out channels and a k x k grouped Conv whose kernel
  picks one tap per channel. ONNX Runtime runs the original as im2col plus a matrix-vector product,
  which copies the input k*k times; the 1x1 Conv reads it once.

Measured on the cvae decoders (`benchmarks/export_latency.py`); the sub-pixel rewrite of
ConvTranspose (Conv to s*s*C_out channels, then DepthToSpace) was slower, because ONNX Runtime's
CPU DepthToSpace costs more than the ConvTranspose it replaces, so it is not done.
"""

import numpy as np
import onnx
from onnx import helper, numpy_helper

MAX_WALK = 24  # nodes walked back from a Conv's input to find the low-resolution tensor of an upsampling


def optimize(model):
    """Returns a copy of `model` with both passes applied where they fit, and nodes and initializers
    left unused removed. Nodes with other attributes (strides, dilations, groups, auto_pad) or
    shapes that are not static apart from the batch are left as they are."""
    graph = Graph(onnx.shape_inference.infer_shapes(model, data_prop=True))
    for node in [node for node in graph.nodes if node.op_type == "Conv"]:
        graph.resize_upsampling(node)
        graph.split_taps(node)
    graph.prune()
    return graph.to_model(model)


class Graph:
    """The nodes and initializers of a shape-inferred model as Python lists that the rewrites edit;
    the model itself stays as it was, for running its subgraphs."""

    def __init__(self, model):
        self.model = model
        self.nodes = [_copy(node) for node in model.graph.node]
        self.initializers = {init.name: _copy(init) for init in model.graph.initializer}
        self.outputs = [value.name for value in model.graph.output]
        self.shapes = {value.name: _static_dims(value) for value in
                       [*model.graph.value_info, *model.graph.input, *model.graph.output]}
        self.producers = {out: node for node in self.nodes for out in node.output}
        self._names = {name for node in self.nodes for name in [node.name, *node.output]} | set(self.initializers)

    def to_model(self, original):
        """A copy of `original` with these nodes and initializers (and no intermediate shapes,
        stale for the rewritten tensors: runtimes infer their own)."""
        model = _copy(original)
        del model.graph.node[:], model.graph.initializer[:], model.graph.value_info[:]
        model.graph.node.extend(self.nodes)
        model.graph.initializer.extend(self.initializers.values())
        return model

    def resize_upsampling(self, node):
        """Feeds `node` (a Conv) a single Resize (nearest) when its input is a nearest upsampling
        spelled in many nodes."""
        found = self.find_upsampling(node.input[0])
        if found is None:
            return False
        source, stride = found
        name = self._unique(f"{node.input[0]}/resize")
        scales = self._initializer(f"{name}/scales", np.array([1, 1, stride, stride], np.float32))
        resize = helper.make_node("Resize", [source, "", scales], [name], name=name, mode="nearest",
                                  coordinate_transformation_mode="asymmetric", nearest_mode="floor")
        self.nodes.insert(self._position(node), resize)
        node.input[0] = name
        return True

    def split_taps(self, node):
        """Conv k x k, C_in -> C_out with k*k*C_out <= C_in -> a 1x1 Conv to k*k*C_out channels (one
        per output channel and tap) and a k x k grouped Conv whose kernel only picks each tap."""
        attrs = _attributes(node)
        weight = self.constant(node.input[1])
        if (weight is None or weight.ndim != 4 or weight.shape[2] * weight.shape[3] == 1 or not _plain(attrs)
                or weight.shape[0] * weight.shape[2] * weight.shape[3] > weight.shape[1]):
            return False
        c_out, c_in, k_h, k_w = weight.shape
        taps = k_h * k_w
        pointwise = weight.transpose(0, 2, 3, 1).reshape(c_out * taps, c_in, 1, 1)  # channel co*taps + t
        pick = np.zeros((c_out, taps, k_h, k_w), weight.dtype)
        for t in range(taps):
            pick[:, t, t // k_w, t % k_w] = 1
        name = self._unique(node.name or node.output[0])
        tapped = f"{name}/taps"
        nodes = [helper.make_node("Conv", [node.input[0], self._initializer(f"{name}/tap_kernel", pointwise)],
                                  [tapped], name=tapped, kernel_shape=[1, 1]),
                 helper.make_node("Conv", [tapped, self._initializer(f"{name}/pick_kernel", pick), *node.input[2:]],
                                  list(node.output), name=f"{name}/pick", kernel_shape=[k_h, k_w], group=c_out,
                                  pads=attrs.get("pads", [0, 0, 0, 0]))]
        index = self._position(node)
        self.nodes[index:index + 1] = nodes
        self.producers.update({out: new for new in nodes for out in new.output})
        return True

    def find_upsampling(self, name):
        """`(NCHW low-resolution tensor, s)` when `name` (NCHW, static C, H, W) is a
        nearest upsampling by an integer s of an earlier tensor, NCHW or NHWC (then a Transpose to
        NCHW is added); else None. Walks back along first inputs and checks each candidate by running
        the subgraph between them."""
        shape = self.shapes.get(name)
        if shape is None or len(shape) != 4 or None in shape[1:]:
            return None
        channels, height, width = shape[1:]
        current = name
        for _ in range(MAX_WALK):
            producer = self.producers.get(current)
            if producer is None or not producer.input:
                return None
            current = producer.input[0]
            low = self.shapes.get(current)
            if low is None or len(low) != 4 or None in low[1:]:
                continue
            for layout, (c, h, w) in (("NCHW", low[1:]), ("NHWC", (low[3], low[1], low[2]))):
                if c == channels and h < height and height % h == 0 and width % w == 0 and height // h == width // w:
                    if self._is_nearest_upsampling(current, name, layout, height // h):
                        return (current if layout == "NCHW" else self._to_nchw(current)), height // h
        return None

    def _is_nearest_upsampling(self, source, target, layout, stride):
        """Runs the subgraph from `source` to `target` (NCHW) on random inputs and compares it with
        the nearest upsampling of `source` in `layout`, exactly."""
        import onnxruntime

        try:
            sub = onnx.utils.Extractor(self.model).extract_model([source], [target])
        except Exception:  # noqa: BLE001 - a subgraph that needs other graph inputs is not an upsampling
            return False
        shape = [2, *self.shapes[source][1:]]
        x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
        try:
            session = onnxruntime.InferenceSession(sub.SerializeToString(), options, providers=["CPUExecutionProvider"])
            y = session.run(None, {source: x})[0]
        except Exception:  # noqa: BLE001 - not runnable on its own (e.g. another dtype): leave it alone
            return False
        axes = (2, 3) if layout == "NCHW" else (1, 2)
        expected = np.repeat(np.repeat(x, stride, axis=axes[0]), stride, axis=axes[1])
        if layout == "NHWC":
            expected = expected.transpose(0, 3, 1, 2)
        return y.shape == expected.shape and np.array_equal(y, expected)

    def prune(self):
        """Removes nodes whose outputs nothing uses, and initializers no node reads."""
        needed, kept = set(self.outputs), []
        for node in reversed(self.nodes):
            if any(out in needed for out in node.output):
                kept.append(node)
                needed.update(node.input)
        self.nodes = kept[::-1]
        self.initializers = {name: init for name, init in self.initializers.items() if name in needed}

    def _position(self, node):
        return next(i for i, candidate in enumerate(self.nodes) if candidate is node)

    def constant(self, name):
        init = self.initializers.get(name)
        return None if init is None else numpy_helper.to_array(init)

    def _to_nchw(self, name):
        """A Transpose of the NHWC tensor `name` to NCHW, placed right after its producer."""
        out = self._unique(f"{name}/nchw")
        transpose = helper.make_node("Transpose", [name], [out], name=out, perm=[0, 3, 1, 2])
        producer = self.producers.get(name)
        self.nodes.insert(self._position(producer) + 1 if producer is not None else 0, transpose)
        self.producers[out] = transpose
        return out

    def _initializer(self, name, array):
        name = self._unique(name)
        self.initializers[name] = numpy_helper.from_array(array, name)
        return name

    def _unique(self, name):
        candidate, n = name, 0
        while candidate in self._names:
            n += 1
            candidate = f"{name}_{n}"
        self._names.add(candidate)
        return candidate


def _copy(message):
    copy = type(message)()
    copy.CopyFrom(message)
    return copy


def _plain(attrs):
    """A Conv without strides, dilations, groups or auto_pad."""
    return (all(value == 1 for key in ("strides", "dilations") for value in attrs.get(key, [1, 1]))
            and attrs.get("group", 1) == 1 and attrs.get("auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET"))


def _attributes(node):
    return {attr.name: helper.get_attribute_value(attr) for attr in node.attribute}


def _static_dims(value):
    """A value's dims (None for a symbolic or unknown one), or None without a shape."""
    if not value.type.tensor_type.HasField("shape"):
        return None
    return [dim.dim_value if dim.HasField("dim_value") else None for dim in value.type.tensor_type.shape.dim]
