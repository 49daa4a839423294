"""Pretrained models by name: small ones bundled with the package, bigger ones from a registry.

    import zoo
    zoo.list_pretrained()          # ['ae-mnist5k', 'beta_vae-dsprites', 'cvae-mnist5k', ...]
    decoder = zoo.load_pretrained("cvae-mnist5k", format="onnx")   # numpy + onnxruntime only
    sevens = decoder.generate(16, labels=7, seed=0)                 # [16, 28, 28, 1] in [0, 1]
    model = zoo.load_pretrained("vae-mnist5k", part="model")        # the full Keras model
    scorer = zoo.load_pretrained("cvae-mnist5k", part="model", format="onnx")  # encoder + decoder, no TensorFlow

A bundle is a folder `<name>/` beside this file: the decoder as `decoder.onnx` and
`decoder.tflite` (with its facts, `decoder.tflite.json`), the encoder likewise (`encoder.onnx`,
`encoder.tflite`, `encoder.tflite.json`), the whole model as `model.keras`, and
`manifest.json` with each file's sha256 and size, the recipe command that made it and its
metrics. Every file is checked against its sha256 before it is read; `ChecksumError` names the
file. `python -m zoo.pretrained rebuild [NAME]` re-creates bundles with their recipes.

A registry (`registry=` or the `VAE_ZOO_REGISTRY` environment variable: an http(s) or file URL)
serves bigger models in the same layout, `<registry>/<name>/manifest.json` and its files, plus
`<registry>/index.json` listing the names. They are downloaded into the cache folder
(`$VAE_ZOO_CACHE/pretrained`, default `~/.cache/vae-zoo/pretrained`) and appear there only once
every file has passed its checksum. A download reads no more than it should: an index or manifest
up to `JSON_MAX_BYTES`, a file up to its manifest's `bytes`, all within `DEADLINE_S` seconds.

This module imports no TensorFlow: ONNX and TFLite decoders load with `export.runtime`, and only
`format="keras"` imports Keras.
"""

import http.client
import json
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request

from zoo import files

BUNDLED = os.path.dirname(os.path.abspath(__file__))
MANIFEST = "manifest.json"
REGISTRY_ENV = "VAE_ZOO_REGISTRY"
PARTS = ("decoder", "model")
FORMATS = {"keras": ("model.keras",), "onnx": ("decoder.onnx",), "tflite": ("decoder.tflite", "decoder.tflite.json")}
ENCODER_FILES = {"onnx": ("encoder.onnx",), "tflite": ("encoder.tflite", "encoder.tflite.json")}
TIMEOUT_S = 30  # the longest wait for a connection or for the next bytes
DEADLINE_S = 600  # the longest one download may take (an index, or a model's manifest and files)
JSON_MAX_BYTES = 1 << 20  # the largest index.json or manifest.json a registry may serve
BLOCK_BYTES = 1 << 16
NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")  # a folder or file name: no path separators, not hidden
SHA256 = re.compile(r"[0-9a-f]{64}")

# The bundled models and the recipe command that makes each (`--out` is added when it runs).
# Width 32 (16 for 64x64 dSprites) keeps each bundle under 5 MB, encoder and decoder in two formats included.
RECIPES = {
    "ae-mnist5k": "python recipes/train_ae.py --dataset mnist5k --epochs 30 --latent-dim 16 --seed 0 --width 32",
    "vae-mnist5k": "python recipes/train_vae.py --dataset mnist5k --epochs 30 --latent-dim 16 --seed 0 --width 32",
    "cvae-mnist5k": "python recipes/train_cvae.py --dataset mnist5k --epochs 30 --latent-dim 16 --seed 0 --width 32 "
                    "--beta 2",
    "vqvae-mnist5k": "python recipes/train_vqvae.py --dataset mnist5k --epochs 30 --seed 0 --width 32",
    "beta_vae-dsprites": "python recipes/train_beta_vae.py --dataset dsprites --epochs 10 --latent-dim 10 --beta 4 "
                         "--seed 0 --width 16",
}


class ChecksumError(ValueError):
    """A pretrained file whose sha256 differs from its manifest's: corrupt or changed."""


class PretrainedError(ValueError):
    """An unknown name, a missing bundle or file, or a registry that cannot be reached."""


def list_pretrained(registry=None):
    """Names of the bundled models, plus the registry's when one is given or set in `VAE_ZOO_REGISTRY`."""
    names = {name for name in os.listdir(BUNDLED) if os.path.isfile(os.path.join(BUNDLED, name, MANIFEST))}
    registry = _registry(registry)
    if registry:
        url = _join(registry, "index.json")
        index = _read_json_url(url, time.monotonic() + DEADLINE_S)
        models = index.get("models") if isinstance(index, dict) else None
        if not isinstance(models, list) or not all(isinstance(name, str) and NAME.fullmatch(name) for name in models):
            raise PretrainedError(f"{url} should be {{\"models\": [names such as \"vae-mnist5k\"]}}.")
        names.update(models)
    return sorted(names)


def load_pretrained(name, part="decoder", format="keras", *, registry=None, providers=None):
    """Loads a pretrained model or decoder by name, after checking its files' checksums.

    Args:
        name: a name from `list_pretrained()`.
        part: "decoder" (z [and labels] -> images) or "model" (the whole model; Keras only).
        format: "keras" (a Keras model, safe-mode loaded), "onnx" or "tflite" (an
            `export.runtime.Decoder`, or for `part="model"` an `export.runtime.Model` of the
            encoder and decoder, which need numpy and onnxruntime or ai-edge-litert only).
        registry: where to fetch models that are not bundled (default: `VAE_ZOO_REGISTRY`).
        providers: ONNX Runtime execution providers (see `export.runtime.load_decoder`).

    Returns:
        For "keras": the zoo model (`part="model"`) or its serving decoder, a functional Keras
        model from named inputs `z` (and `labels`) to `{"mean"[, "logits"]}`. For "onnx" and
        "tflite": a `Decoder` with `.decode(z, labels)` and `.generate(n, labels, seed)`.

    Raises:
        ChecksumError: a file differs from its manifest's size or sha256 (the message names the file).
        PretrainedError: an unknown name, a malformed manifest, or a registry that is not a URL, cannot
            be reached, or serves more bytes or more slowly than allowed.
        ValueError: an unknown part or format, or a part the format does not hold.
    """
    if part not in PARTS:
        raise ValueError(f"Unknown part '{part}': expected one of {PARTS}.")
    if format not in FORMATS:
        raise ValueError(f"Unknown format '{format}': expected one of {tuple(FORMATS)}.")
    folder = locate(name, registry)
    path, *_ = [verify(folder, filename) for filename in FORMATS[format]]
    if part == "model" and format != "keras":
        from export.runtime import load_model

        if not set(ENCODER_FILES[format]) <= set(read_manifest(folder)["files"]):
            raise PretrainedError(f"'{name}' has no exported encoder: use part='decoder', or format='keras' for the "
                                  "model.")
        for filename in ENCODER_FILES[format]:
            verify(folder, filename)
        return load_model(folder, format, providers=providers)
    if format != "keras":
        from export.runtime import load_decoder

        return load_decoder(path, providers=providers)
    from zoo import artifacts

    model = artifacts.load_model(path)
    if part == "model":
        return model
    from export.serving import serving_decoder

    return serving_decoder(model)


def locate(name, registry=None):
    """The folder of model `name`: its bundle, else its copy in the cache, fetched from the
    registry when it is not there yet."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise PretrainedError(f"Expected a pretrained model name such as 'vae-mnist5k', received {name!r}.")
    bundled = os.path.join(BUNDLED, name)
    if os.path.isfile(os.path.join(bundled, MANIFEST)):
        return bundled
    cached = os.path.join(files.cache_dir(), "pretrained", name)
    if os.path.isfile(os.path.join(cached, MANIFEST)):
        return cached
    registry = _registry(registry)
    if not registry:
        raise PretrainedError(f"Unknown pretrained model '{name}'. Bundled: {', '.join(list_pretrained())}; "
                              f"for others, set {REGISTRY_ENV} to a registry URL.")
    return fetch(name, registry)


def read_manifest(folder):
    """A bundle's manifest; `PretrainedError` if it is missing, not JSON or malformed."""
    path = os.path.join(folder, MANIFEST)
    try:
        with open(path) as f:
            manifest = json.load(f)
    except (OSError, ValueError) as err:
        raise PretrainedError(f"{path} is missing or corrupt ({err}): reinstall the package or rebuild the "
                              "model with `python -m zoo.pretrained rebuild`.") from err
    return check_manifest(manifest, path)


def check_manifest(manifest, source):
    """Returns `manifest` if it has a `name` and a `files` table of plain file names to
    `{"sha256", "bytes"}`; else a `PretrainedError` naming `source` and what is wrong."""
    problem = _manifest_problem(manifest)
    if problem:
        raise PretrainedError(f"{source} is malformed: {problem}. Reinstall the package, rebuild the model with "
                              "`python -m zoo.pretrained rebuild`, or ask the registry's owner to fix it.")
    return manifest


def _manifest_problem(manifest):
    if not isinstance(manifest, dict) or not isinstance(manifest.get("name"), str):
        return "expected a JSON object with a 'name'"
    if not isinstance(manifest.get("files"), dict) or not manifest["files"]:
        return "expected 'files': {file name: {\"sha256\", \"bytes\"}}"
    for filename, entry in manifest["files"].items():
        if not NAME.fullmatch(filename):
            return f"an unsafe file name {filename!r} (expected a plain name, not hidden)"
        if not (isinstance(entry, dict) and isinstance(entry.get("sha256"), str) and SHA256.fullmatch(entry["sha256"])
                and type(entry.get("bytes")) is int and entry["bytes"] >= 0):
            return f"files[{filename!r}] is {entry!r}, expected {{\"sha256\": 64 hex digits, \"bytes\": a size}}"
    return None


def verify(folder, filename, manifest=None):
    """Checks one file of a bundle against its manifest's size and sha256; returns its path."""
    manifest = manifest or read_manifest(folder)
    entry = manifest["files"].get(filename)
    path = os.path.join(folder, filename)
    if entry is None or not os.path.isfile(path):
        raise PretrainedError(f"{path} is missing from the pretrained model '{manifest['name']}'.")
    size = os.path.getsize(path)
    actual = files.sha256(path) if size == entry["bytes"] else None
    if actual != entry["sha256"]:
        found = f"sha256 {actual[:16]}..." if actual else f"{size:,} bytes"
        expected = f"{entry['sha256'][:16]}..." if actual else f"{entry['bytes']:,}"
        raise ChecksumError(f"{path} fails its checksum: {found} but the manifest says {expected} (a corrupt or "
                            f"changed file). Reinstall the package, or rebuild it with "
                            f"`python -m zoo.pretrained rebuild {manifest['name']}`.")
    return path


def fetch(name, registry):
    """Downloads model `name` from `registry` into the cache and returns its folder.

    Files go into a hidden temporary folder; it is renamed into place only after every file has
    passed its checksum, so the cache never holds a half-downloaded model under its name. The
    manifest, then each file, is read up to its size and the whole download within `DEADLINE_S`.
    """
    deadline = time.monotonic() + DEADLINE_S
    root = os.path.join(files.cache_dir(), "pretrained")
    os.makedirs(root, exist_ok=True)
    url = _join(registry, name, MANIFEST)
    manifest = check_manifest(_read_json_url(url, deadline), url)
    target = os.path.join(root, name)
    with files.atomic_folder(target) as staging:
        for filename, entry in manifest["files"].items():
            with open(os.path.join(staging, filename), "wb") as f:
                _download(_join(registry, name, filename), entry["bytes"], "the size its manifest gives", deadline,
                          f.write)
            verify(staging, filename, manifest)
        files.write_json_atomic(os.path.join(staging, MANIFEST), manifest)
    return target


def _registry(registry):
    """`registry`, else `$VAE_ZOO_REGISTRY`, else None; a PretrainedError unless it is a URL."""
    registry = registry or os.environ.get(REGISTRY_ENV)
    if not registry:
        return None
    url = urllib.parse.urlsplit(registry) if isinstance(registry, str) else None
    if url is None or url.scheme not in ("http", "https", "file") or not (url.netloc or url.scheme == "file"):
        raise PretrainedError(f"A registry (registry= or {REGISTRY_ENV}) must be an http://, https:// or file:// "
                              f"URL such as https://example.org/vae-zoo, received {registry!r}.")
    return registry


def _join(registry, *parts):
    return registry.rstrip("/") + "/" + "/".join(urllib.parse.quote(part) for part in parts)


def _read_json_url(url, deadline):
    blocks = []
    _download(url, JSON_MAX_BYTES, "the cap on an index or manifest (zoo.pretrained.JSON_MAX_BYTES)", deadline,
              blocks.append)
    try:
        return json.loads(b"".join(blocks))
    except ValueError as err:
        raise PretrainedError(f"{url} is not valid JSON ({err}).") from err


def _download(url, limit, why, deadline, write):
    """Passes the body of `url` to `write` block by block, refusing more than `limit` bytes (`why`
    says whose limit) or a download still running at `deadline` (`time.monotonic()`): neither a huge
    file nor a server that trickles bytes holds the client longer."""
    try:
        with urllib.request.urlopen(url, timeout=max(0.001, min(TIMEOUT_S, deadline - time.monotonic()))) as response:
            received = 0
            while block := response.read1(BLOCK_BYTES):  # read1: what has arrived, so a trickle cannot hold it
                received += len(block)
                if received > limit:
                    raise PretrainedError(f"{url} is larger than {limit:,} bytes, {why}: refused.")
                if time.monotonic() > deadline:
                    raise PretrainedError(f"{url} did not arrive within {DEADLINE_S} s (zoo.pretrained.DEADLINE_S): "
                                          "the server or the network is too slow.")
                write(block)
    except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
        reason = getattr(err, "reason", err)
        raise PretrainedError(f"Could not fetch {url}: {reason}. Check the registry address "
                              f"({REGISTRY_ENV}) and the network.") from err
