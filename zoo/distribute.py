"""Where training runs: tf.distribute strategies, logical CPU devices, mixed precision, worker roles.

The global batch is the recipe's `--batch-size` whatever the number of replicas: Keras splits
each batch of the pipeline across the replicas (`batch / replicas` images each) and the
optimizer sums the replicas' gradients of `loss / replicas` (see `LatentVariableModel.train_step`),
so one step on N replicas is the step of one device on the same batch. The learning rate is
therefore not scaled with the replica count. Raise `--batch-size` to keep more replicas busy and
scale `--learning-rate` with it yourself: linearly for SGD (Goyal et al., 2017), by about the
square root of the batch ratio for Adam.

Example:
    strategy = make_strategy("mirrored", cpu_devices=2)   # before TensorFlow runs anything
    with strategy.scope():
        model = zoo.create("vae", input_shape=(28, 28, 1))
        model.compile(optimizer="adam")
"""

import contextlib
import json
import os
import shutil
import tempfile

import keras
import tensorflow as tf

from zoo.cli import STRATEGIES

TF_CONFIG_EXAMPLE = ('{"cluster": {"worker": ["127.0.0.1:20000", "127.0.0.1:20001"]}, '
                     '"task": {"type": "worker", "index": 0}}')


def make_strategy(name="auto", cpu_devices=None):
    """Returns the tf.distribute strategy `name`; call it before TensorFlow runs anything.

    Args:
        name: "auto" mirrors over all local devices when there are several (GPUs, or logical
            CPUs from `cpu_devices`) and otherwise uses the default one-device strategy;
            "mirrored" is `MirroredStrategy` over the local GPUs, or the logical CPUs without
            GPUs; "multiworker" is `MultiWorkerMirroredStrategy` over the cluster in `TF_CONFIG`.
        cpu_devices: split the CPU into this many logical devices (see `split_cpu`).

    Raises:
        ValueError: an unknown name, a missing or malformed `TF_CONFIG`, or devices configured
            too late.
    """
    if name not in STRATEGIES:
        raise ValueError(f"Unknown strategy '{name}': expected one of {STRATEGIES}.")
    if cpu_devices:
        split_cpu(cpu_devices)
    if name == "multiworker":
        check_tf_config()
        return tf.distribute.MultiWorkerMirroredStrategy()
    devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    if name == "mirrored" or len(devices) > 1:
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    return tf.distribute.get_strategy()


def split_cpu(n):
    """Splits the first CPU into `n` logical devices, so `mirrored` runs `n` replicas without GPUs.

    The devices share the machine's cores: this exercises the distributed code path, it does not
    add compute. TensorFlow fixes its devices when it starts, hence the error after that.
    """
    if int(n) != n or n < 1:
        raise ValueError(f"Expected a positive number of CPU devices, received {n!r}.")
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * int(n))
    except RuntimeError as err:
        raise ValueError(f"Cannot split the CPU into {n} devices once TensorFlow has started ({err}); "
                         "do it first thing in the process.") from err


def check_tf_config():
    """Returns the parsed `TF_CONFIG` of a multi-worker run; raises ValueError saying what is wrong."""
    text = os.environ.get("TF_CONFIG")
    if not text:
        raise ValueError(f"--strategy multiworker reads the cluster from the TF_CONFIG environment variable, "
                         f"which is not set. Expected, for worker 0 of two: TF_CONFIG='{TF_CONFIG_EXAMPLE}'.")
    try:
        config = json.loads(text)
        jobs, role, index = config["cluster"], config["task"]["type"], int(config["task"]["index"])
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"TF_CONFIG is not a cluster description ({type(err).__name__}: {err}); "
                         f"expected JSON like '{TF_CONFIG_EXAMPLE}', received '{text}'.") from None
    if not jobs.get("worker"):
        raise ValueError(f"TF_CONFIG's cluster has no workers: {jobs}.")
    if role not in jobs or not 0 <= index < len(jobs[role]):
        raise ValueError(f"TF_CONFIG names task {role} {index}, which its cluster {jobs} does not have.")
    return config


def strategy_name(strategy):
    """How a run records its strategy: "multiworker", "mirrored", "default" or the class name."""
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return "multiworker"
    if isinstance(strategy, tf.distribute.MirroredStrategy):
        return "mirrored"
    return "default" if strategy is tf.distribute.get_strategy() else type(strategy).__name__


def is_chief(strategy):
    """True for the one process that writes the run: the only one, or the multi-worker chief
    (task "chief", or worker 0 when the cluster has no chief)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or resolver.task_type is None:
        return True
    if resolver.task_type == "chief":
        return True
    return (resolver.task_type == "worker" and resolver.task_id == 0
            and "chief" not in resolver.cluster_spec().as_dict())


@contextlib.contextmanager
def run_directory(out, strategy):
    """Yields the directory this process writes its run to: `out` on the chief; a temporary folder,
    deleted on exit, on the other workers.

    Every worker must run the same saves as the chief (saving can hold collective ops that wait
    for all workers), but only the chief's files make the run.
    """
    if is_chief(strategy):
        yield out
        return
    scratch = tempfile.mkdtemp(prefix="zoo-worker-")
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


@contextlib.contextmanager
def dtype_policy(name):
    """Sets Keras' global dtype policy for the models built inside, and restores it after."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def float32_outputs(model):
    """Makes the last layer of the encoder and the decoder compute in float32 under mixed precision.

    Keras' mixed-precision rule: the layers whose outputs parameterise the distributions stay
    float32, so q(z|x), p(x|z) and the loss are float32 while the layers before them run in
    float16.
    """
    for network in (model.encoder, model.decoder):
        network.layers[-1].dtype_policy = keras.DTypePolicy("float32")


def float32_copy(model):
    """The model rebuilt with float32 networks and the same weights (variables are float32 under
    mixed precision too), without optimizer state: what a mixed-precision run saves, since the
    SavedModel signatures and exports are float32, and what a pretrained bundle holds."""
    with dtype_policy("float32"):
        copy = type(model).from_config({**model.get_config(), "dtype": "float32"})
    copy.set_weights(model.get_weights())
    return copy


def patch_multiworker_logs(model, strategy):
    """Works around Keras 3 `fit` under a multi-worker strategy (tensorflow/tensorflow#72388).

    Keras reduces each step's logs across workers with `strategy.reduce("MEAN", logs, axis=0)`,
    which fails on the scalar logs of every Keras model ("Invalid reduction dimension 0 for input
    with 0 dimensions"). Giving each log an axis of length 1 lets that reduction average the
    replicas and return a scalar again. Single-process strategies do not take that path.
    """
    if not (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
            and strategy.extended._in_multi_worker_mode()):  # the condition Keras itself tests
        return
    for name in ("train_step", "test_step"):
        step = getattr(model, name)
        setattr(model, name, lambda data, step=step: {k: tf.reshape(v, [1]) for k, v in step(data).items()})


def worker_shard(strategy):
    """`(workers, index)` of this process in a multi-worker run, for file-based input sharding (each
    worker reads its own files or shards, see `zoo.data.Split.shard`); None in a one-process run."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or resolver is None \
            or resolver.task_type is None:
        return None
    cluster = resolver.cluster_spec().as_dict()
    tasks = [(role, i) for role in ("chief", "worker") for i in range(len(cluster.get(role, [])))]
    return len(tasks), tasks.index((resolver.task_type, resolver.task_id))
