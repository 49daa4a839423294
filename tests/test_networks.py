"""The backbones of `zoo.networks`: shapes, the conv backbone as it always was, the residual
backbone's config round trip, errors, and its export to ONNX and TFLite builtins."""

import keras
import numpy as np
import pytest

from conftest import images
from zoo import networks

RESNET_SHAPES = [(32, 32, 1), (32, 32, 3), (64, 64, 3), (128, 128, 1), (32, 64, 1), (32, 64, 3), (28, 28, 1)]


def resnet(**options):
    return dict(backbone="resnet", width=8, hidden=16, **options)


@pytest.mark.parametrize("shape", RESNET_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_resnet_networks_map_images_to_vectors_and_grids_and_back(shape):
    x = images(shape, 2)
    encoder = networks.encoder(shape, 6, **resnet(dense_layers=1))
    assert encoder(x).shape == (2, 6)
    assert networks.decoder(3, shape, **resnet(dense_layers=1))(np.zeros((2, 3), np.float32)).shape == (2, *shape)
    grid = networks.grid_shape(shape)
    assert grid == {28: (7, 7), 32: (4, 8 if shape[1] == 64 else 4), 64: (4, 4), 128: (4, 4)}[shape[0]]
    assert networks.spatial_encoder(shape, 5, **resnet(depth=2))(x).shape == (2, *grid, 5)
    spatial = networks.spatial_decoder((*grid, 5), shape, **resnet(depth=2))
    assert spatial(np.zeros((2, *grid, 5), np.float32)).shape == (2, *shape)
    assert not any(isinstance(layer, keras.layers.Conv2DTranspose) for layer in spatial.layers)


def test_resnet_keeps_full_resolution_cheap_and_blocks_per_level():
    encoder = networks.encoder((64, 64, 3), 4, **resnet(depth=2))
    decoder = networks.decoder(4, (64, 64, 70), **resnet(depth=2))
    full = lambda net: [layer for layer in net.layers if isinstance(layer, keras.layers.Conv2D)
                        and layer.output.shape[1] == 64]
    assert full(encoder) == []  # the stem strides at once
    assert [(layer.kernel_size, layer.filters) for layer in full(decoder)] == [((3, 3), 8), ((1, 1), 70)]
    adds = lambda net: sum(isinstance(layer, keras.layers.Add) for layer in net.layers)
    assert adds(encoder) == adds(decoder) == 2 * 4  # depth blocks at each of 4 levels (32, 16, 8, 4)
    widths = sorted({layer.filters for layer in encoder.layers if isinstance(layer, keras.layers.Conv2D)})
    assert widths == [8, 16, 32]  # doubled per level up to 4x width


@pytest.mark.parametrize("norm, layer", [("group", keras.layers.GroupNormalization),
                                         ("weight", networks.WeightNormConv2D)])
def test_norms_put_their_layers_in_the_blocks(norm, layer):
    net = networks.decoder(4, (32, 32, 3), **resnet(norm=norm))
    assert any(isinstance(each, layer) for each in net.layers)
    plain = networks.decoder(4, (32, 32, 3), **resnet())
    assert not any(isinstance(each, (keras.layers.GroupNormalization, networks.WeightNormConv2D))
                   for each in plain.layers)


def test_weight_norm_kernel_has_the_gain_as_its_norm():
    conv = networks.WeightNormConv2D(4, 3, padding="same")
    x = images((5, 5, 2), 1)
    conv.build(x.shape)
    conv.gain.assign([1.0, 2.0, 0.5, 3.0])
    kernel = keras.ops.convert_to_numpy(conv.kernel)
    normalised = kernel * conv.gain.numpy() / np.sqrt((kernel**2).sum(axis=(0, 1, 2)))
    expected = keras.ops.convert_to_numpy(keras.ops.conv(x, normalised, padding="same")) + conv.bias.numpy()
    np.testing.assert_allclose(keras.ops.convert_to_numpy(conv(x)), expected, atol=1e-5)


# Layer and parameter counts of the conv and MLP backbones, from zoo/networks.py before it became a package.
CONV_COUNTS = {
    "encoder 64x64x3": (lambda: networks.encoder((64, 64, 3), 10, width=16, dense_layers=1, hidden=32), 7, 93642),
    "decoder 64x64x3": (lambda: networks.decoder(5, (64, 64, 3), width=16, dense_layers=1, hidden=32), 8, 131363),
    "broadcast": (lambda: networks.decoder(5, (32, 32, 1), width=8, broadcast=True), 6, 2337),
    "encoder 28x28": (lambda: networks.encoder((28, 28, 1), 8, width=8), 4, 7528),
    "decoder 28x28": (lambda: networks.decoder(4, (28, 28, 1), width=8), 5, 7473),
    "spatial encoder": (lambda: networks.spatial_encoder((32, 32, 3), 6, width=8), 4, 6230),
    "spatial decoder": (lambda: networks.spatial_decoder((4, 4, 6), (32, 32, 3), width=8), 5, 17011),
    "mlp encoder": (lambda: networks.encoder((8, 8, 1), 4, hidden=16), 4, 1380),
    "mlp decoder": (lambda: networks.decoder(2, (8, 8, 1), hidden=16), 4, 1408),
}


@pytest.mark.parametrize("case", CONV_COUNTS)
def test_conv_backbone_is_the_one_before_residual_backbones(case):
    build, layer_count, params = CONV_COUNTS[case]
    net = build()
    assert (len(net.layers), net.count_params()) == (layer_count, params)
    assert isinstance(net, keras.Sequential)
    assert not any(isinstance(layer, keras.layers.UpSampling2D) for layer in net.layers)


def test_small_images_get_the_mlp_whatever_the_backbone():
    for backbone in networks.BACKBONES:
        net = networks.encoder((8, 8, 1), 4, backbone=backbone, hidden=16, norm="group", depth=3)
        assert net.count_params() == 1380


def test_resnet_config_round_trip_gives_the_same_outputs():
    net = networks.decoder(4, (32, 32, 3), **resnet(norm="weight", dense_layers=1))
    z = np.random.default_rng(1).normal(size=(3, 4)).astype(np.float32)
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(net))
    again.set_weights(net.get_weights())
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(again(z)), keras.ops.convert_to_numpy(net(z)))
    assert [type(layer) for layer in again.layers] == [type(layer) for layer in net.layers]


@pytest.mark.parametrize("norm", networks.NORMS)
def test_saved_resnet_reloads_with_its_weights(tmp_path, norm):
    net = networks.encoder((32, 32, 3), 4, **resnet(norm=norm))
    net.set_weights([w + 0.1 for w in net.get_weights()])  # the weight norm's gains away from their initial 1
    net.save(tmp_path / "net.keras")
    again = keras.saving.load_model(tmp_path / "net.keras")
    x = images((32, 32, 3), 2)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(again(x)), keras.ops.convert_to_numpy(net(x)))


@pytest.mark.parametrize("options, message", [
    (dict(backbone="vit"), "Unknown backbone 'vit'"),
    (dict(backbone="resnet", norm="batch"), "Unknown norm 'batch'"),
    (dict(backbone="resnet", depth=0), "depth >= 1"),
])
def test_unknown_options_are_refused(options, message):
    for build in (lambda: networks.encoder((32, 32, 1), 4, **options),
                  lambda: networks.decoder(4, (32, 32, 1), **options),
                  lambda: networks.decoder(4, (32, 32, 1), broadcast=True, **options),
                  lambda: networks.spatial_encoder((32, 32, 1), 4, **options),
                  lambda: networks.spatial_decoder((4, 4, 4), (32, 32, 1), **options)):
        with pytest.raises(ValueError, match=message):
            build()


@pytest.mark.parametrize("backbone", networks.BACKBONES)
def test_sides_that_do_not_divide_are_refused(backbone):
    message = r"divisible by 8 \(3 stride-2 levels for the shorter side 32\), received 32x36"
    with pytest.raises(ValueError, match=message):
        networks.decoder(4, (32, 36, 1), backbone=backbone, width=8)
    with pytest.raises(ValueError, match="divisible by 16"):
        networks.encoder((64, 72, 3), 4, backbone=backbone, width=8)
    assert networks.decoder(4, (48, 64, 3), backbone=backbone, width=8).output_shape == (None, 48, 64, 3)
    assert networks.decoder(4, (30, 36, 1), broadcast=True, width=4).output_shape == (None, 30, 36, 1)


@pytest.fixture(scope="module")
def exported_decoder(tmp_path_factory):
    """Resnet decoders with group and with weight norm, and their latents, for the export tests."""
    nets = {norm: networks.decoder(4, (32, 32, 21), **resnet(norm=norm, dense_layers=1))
            for norm in ("group", "weight")}
    for net in nets.values():  # trained-looking weights: gains and biases away from 1 and 0
        rng = np.random.default_rng(0)
        net.set_weights([w + 0.1 * rng.normal(size=w.shape).astype(np.float32) for w in net.get_weights()])
    z = np.random.default_rng(2).normal(size=(3, 4)).astype(np.float32)
    latent = keras.Input((4,), name="z")  # the export signature names its inputs, as serving decoders do
    return {norm: keras.Model(latent, net(latent)) for norm, net in nets.items()}, z, tmp_path_factory.mktemp("export")


@pytest.mark.parametrize("norm", ["group", "weight"])
def test_resnet_decoder_exports_to_onnx_with_the_same_outputs(exported_decoder, norm):
    import onnx
    import onnxruntime

    from export.to_onnx import write_onnx

    nets, z, folder = exported_decoder
    path = str(folder / f"decoder-{norm}.onnx")
    write_onnx(nets[norm], path, facts={})
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {session.get_inputs()[0].name: z})
    np.testing.assert_allclose(out, keras.ops.convert_to_numpy(nets[norm](z)), atol=1e-4)
    assert "ConvTranspose" not in {node.op_type for node in onnx.load(path).graph.node}


@pytest.mark.parametrize("norm", ["group", "weight"])
def test_resnet_decoder_exports_to_tflite_builtins_with_the_same_outputs(exported_decoder, norm):
    from ai_edge_litert.interpreter import Interpreter

    from export.to_tflite import write_tflite

    nets, z, folder = exported_decoder
    path = str(folder / f"decoder-{norm}.tflite")
    write_tflite(nets[norm], path, facts={})  # TFLite builtins only
    interpreter = Interpreter(model_path=path)
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    interpreter.resize_tensor_input(inp["index"], z.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(inp["index"], z)
    interpreter.invoke()
    np.testing.assert_allclose(interpreter.get_tensor(out["index"]), keras.ops.convert_to_numpy(nets[norm](z)),
                               atol=1e-4)


def test_resnet_vae_round_trips_through_model_save(tmp_path):
    import zoo

    model = zoo.create("vae", input_shape=(32, 32, 3), latent_dim=4, width=8, backbone="resnet", norm="weight",
                       likelihood="gaussian")
    assert any(isinstance(layer, networks.WeightNormConv2D) for layer in model.decoder.layers)
    path = str(tmp_path / "model.keras")
    model.save(path)
    again = zoo.load_model(path)
    assert (again.backbone, again.norm, again.depth) == ("resnet", "weight", 1)
    x = images((32, 32, 3), 2)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(again(x)), keras.ops.convert_to_numpy(model(x)), atol=1e-6)
