"""tf.distribute: mirrored replicas on logical CPUs, two multi-worker processes, mixed precision.

Logical devices and multi-worker collectives must be configured before TensorFlow starts, so
those tests run in fresh processes.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap

import keras
import numpy as np

from zoo import artifacts, distribute, training

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAST = ["--latent-dim", "4", "--width", "8", "--nll-samples", "0"]

MIRRORED_VS_ONE_DEVICE = textwrap.dedent("""
    import json, sys
    from zoo import distribute
    mirrored = distribute.make_strategy("mirrored", cpu_devices=2)  # before TensorFlow starts
    import keras, numpy as np, tensorflow as tf
    from zoo import data, training

    one = tf.distribute.get_strategy()
    # 1. One SGD step on 2 replicas is the one-device step on the same global batch: the loss of
    #    each replica is scaled by 1/replicas (SGD, unlike Adam, would show a wrong scale).
    x = data.binarize(data.load(sys.argv[1], "train")[0][:64])
    weights = {}
    for name, strategy in (("one", one), ("mirrored", mirrored)):
        keras.utils.set_random_seed(0)
        model = training.build_model("ae", strategy, input_shape=x.shape[1:], latent_dim=4, width=8)
        with strategy.scope():
            model.compile(optimizer=keras.optimizers.SGD(0.01))
        model.fit(tf.data.Dataset.from_tensor_slices(x).batch(32), epochs=2, verbose=0)
        weights[name] = model.get_weights()
    step_error = max(float(np.max(np.abs(a - b))) for a, b in zip(weights["one"], weights["mirrored"]))
    clip = training.build_model("ae", mirrored, input_shape=x.shape[1:], latent_dim=4, clip_norm=2.0)
    # 2. The training loop itself: one epoch of the deterministic autoencoder, both ways.
    histories = {}
    for name, strategy in (("one", one), ("mirrored", mirrored)):
        out = f"{sys.argv[2]}/{name}"
        manifest = training.train("ae", out=out, dataset=sys.argv[1], epochs=1, latent_dim=4, width=8, nll_samples=0,
                                  backbone="conv", binarize="threshold", strategy=strategy,
                                  print_fn=lambda *a, **k: None)  # the networks of part 1
        histories[name] = {"history": open(f"{out}/history.csv").read(),
                           **{k: manifest["training"][k] for k in ("replicas", "strategy")}}
    print(json.dumps({"replicas": mirrored.num_replicas_in_sync, "step_error": step_error,
                      "clipnorm_per_replica": clip.optimizer.global_clipnorm, "histories": histories}))
""")


def rows(history_text):
    lines = history_text.splitlines()
    return [dict(zip(lines[0].split(","), map(float, line.split(",")))) for line in lines[1:]]


def test_mirrored_on_two_cpu_devices_matches_one_device(tmp_path, mnist_npz):
    result = subprocess.run([sys.executable, "-c", MIRRORED_VS_ONE_DEVICE, mnist_npz, str(tmp_path)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    assert report["replicas"] == 2
    assert report["step_error"] < 1e-5
    assert report["clipnorm_per_replica"] == 1.0  # each replica's share, so the sum stays within 2.0
    one, mirrored = report["histories"]["one"], report["histories"]["mirrored"]
    assert (one["replicas"], mirrored["replicas"]) == (1, 2)
    assert (one["strategy"], mirrored["strategy"]) == ("default", "mirrored")
    for a, b in zip(rows(one["history"]), rows(mirrored["history"]), strict=True):
        for key in ("loss", "val_loss"):  # Adam magnifies round-off a little: close, not bitwise equal
            np.testing.assert_allclose(b[key], a[key], rtol=2e-3)


def free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_two_multiworker_processes_train_one_epoch(tmp_path, mnist_npz):
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    processes = []
    for index in range(2):
        env = {**os.environ, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
        command = [sys.executable, os.path.join(ROOT, "recipes", "train_vae.py"), "--strategy", "multiworker",
                   "--dataset", mnist_npz, "--epochs", "1", *FAST, "--out", str(tmp_path / f"out{index}")]
        processes.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = [(p.wait(timeout=600), *p.communicate()) for p in processes]
    for code, out, err in results:
        assert code == 0, err
        assert "2 replica(s)" in out and "epoch 1/1" in out
    manifest = artifacts.read_manifest(str(tmp_path / "out0"))  # worker 0 is the chief
    assert manifest["training"]["replicas"] == 2 and manifest["training"]["strategy"] == "multiworker"
    assert "worker done: the chief writes the run" in results[1][1]
    assert not (tmp_path / "out1").exists()  # the other worker wrote to a temporary folder it deleted


def test_two_multiworker_processes_read_different_shards_of_a_packed_dataset(tmp_path, mnist_npz):
    from zoo import data

    packed = tmp_path / "packed"
    data.pack(mnist_npz, str(packed), shards=4)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    processes = []
    for index in range(2):
        env = {**os.environ, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
        command = [sys.executable, os.path.join(ROOT, "recipes", "train_vae.py"), "--strategy", "multiworker",
                   "--dataset", str(packed), "--epochs", "1", *FAST, "--out", str(tmp_path / f"out{index}")]
        processes.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = [(p.wait(timeout=600), *p.communicate()) for p in processes]
    read = []
    for index, (code, out, err) in enumerate(results):
        assert code == 0, err
        line = next(line for line in out.splitlines() if line.startswith(f"worker {index} of 2 reads"))
        read.append(set(line.split(" from ")[1].split(", ")))
    assert read[0] and read[1] and not read[0] & read[1]  # each worker its own shards
    assert len(read[0] | read[1]) == 4  # and together all four training shards
    manifest = artifacts.read_manifest(str(tmp_path / "out0"))
    assert manifest["training"]["replicas"] == 2 and manifest["metrics"]["epochs_trained"] == 1


def test_mixed_precision_trains_with_loss_scaling_and_saves_float32(mnist_small):
    (x, _), _ = mnist_small
    model = training.build_model("vae", input_shape=x.shape[1:], latent_dim=4, width=8, mixed_precision=True)
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert model.encoder.layers[0].compute_dtype == "float16"
    assert model.encoder.layers[-1].compute_dtype == model.decoder.layers[-1].compute_dtype == "float32"
    history = model.fit(x[:64], batch_size=32, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    copy = distribute.float32_copy(model)
    assert copy.dtype_policy.name == "float32" and copy.decoder.layers[0].compute_dtype == "float32"
    np.testing.assert_allclose(copy(x[:4]), model(x[:4]), atol=2e-2)  # float16 compute, float32 weights


def test_single_process_strategies_keep_the_step_logs_as_they_are():
    model = training.build_model("vae", input_shape=(8, 8, 1), latent_dim=2)
    assert distribute.is_chief(model.distribute_strategy)
    assert "train_step" not in vars(model)  # the multi-worker workaround is not applied
