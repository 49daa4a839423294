"""Pretrained models by name: small ones bundled with the package, bigger ones from a registry.

    import zoo
    zoo.list_pretrained()          # ['ae-mnist5k', 'beta_vae-dsprites', 'cvae-mnist5k', ...]
    decoder = zoo.load_pretrained("cvae-mnist5k", format="onnx")   # numpy + onnxruntime only
    sevens = decoder.generate(16, labels=7, seed=0)                 # [16, 28, 28, 1] in [0, 1]
    model = zoo.load_pretrained("vae-mnist5k", part="model")        # the full Keras model

A bundle is a folder `<name>/` beside this file: the decoder as `decoder.onnx` and
`decoder.tflite` (with its facts, `decoder.tflite.json`), the whole model as `model.keras`, and
`manifest.json` with each file's sha256 and size, the recipe command that made it and its
metrics. Every file is checked against its sha256 before it is read; `ChecksumError` names the
file. `python -m zoo.pretrained rebuild [NAME]` re-creates bundles with their recipes.

A registry (`registry=` or the `VAE_ZOO_REGISTRY` environment variable: an http(s) or file URL)
serves bigger models in the same layout, `<registry>/<name>/manifest.json` and its files, plus
`<registry>/index.json` listing the names. They are downloaded into the cache folder
(`$VAE_ZOO_CACHE/pretrained`, default `~/.cache/vae-zoo/pretrained`) and appear there only once
every file has passed its checksum.

This module imports no TensorFlow: ONNX and TFLite decoders load with `export.runtime`, and only
`format="keras"` imports Keras.
"""

import json
import os
import re
import shutil
import urllib.error
import urllib.parse
import urllib.request

from zoo import files

BUNDLED = os.path.dirname(os.path.abspath(__file__))
MANIFEST = "manifest.json"
REGISTRY_ENV = "VAE_ZOO_REGISTRY"
PARTS = ("decoder", "model")
FORMATS = {"keras": ("model.keras",), "onnx": ("decoder.onnx",), "tflite": ("decoder.tflite", "decoder.tflite.json")}
TIMEOUT_S = 30
NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")  # a folder name: no path separators, not hidden

# The bundled models and the recipe command that makes each (`--out` is added when it runs).
# Width 32 (16 for 64x64 dSprites) keeps each bundle near 2 MB.
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
    registry = registry or os.environ.get(REGISTRY_ENV)
    if registry:
        index = _read_json_url(_join(registry, "index.json"))
        if not isinstance(index, dict) or not isinstance(index.get("models"), list):
            raise PretrainedError(f"{_join(registry, 'index.json')} should be {{\"models\": [names]}}.")
        names.update(index["models"])
    return sorted(names)


def load_pretrained(name, part="decoder", format="keras", *, registry=None, providers=None):
    """Loads a pretrained model or decoder by name, after checking its files' checksums.

    Args:
        name: a name from `list_pretrained()`.
        part: "decoder" (z [and labels] -> images) or "model" (the whole model; Keras only).
        format: "keras" (a Keras model, safe-mode loaded), "onnx" or "tflite" (an
            `export.runtime.Decoder`, which needs numpy and onnxruntime or ai-edge-litert only).
        registry: where to fetch models that are not bundled (default: `VAE_ZOO_REGISTRY`).
        providers: ONNX Runtime execution providers (see `export.runtime.load_decoder`).

    Returns:
        For "keras": the zoo model (`part="model"`) or its serving decoder, a functional Keras
        model from named inputs `z` (and `labels`) to `{"mean"[, "logits"]}`. For "onnx" and
        "tflite": a `Decoder` with `.decode(z, labels)` and `.generate(n, labels, seed)`.

    Raises:
        ChecksumError: a file differs from its manifest's sha256 (the message names the file).
        PretrainedError: an unknown name, or a registry that cannot be reached.
        ValueError: an unknown part or format, or a part the format does not hold.
    """
    if part not in PARTS:
        raise ValueError(f"Unknown part '{part}': expected one of {PARTS}.")
    if format not in FORMATS:
        raise ValueError(f"Unknown format '{format}': expected one of {tuple(FORMATS)}.")
    if part == "model" and format != "keras":
        raise ValueError(f"{format} files hold the decoder only: use part='decoder', or format='keras' for the model.")
    folder = locate(name, registry)
    path, *_ = [verify(folder, filename) for filename in FORMATS[format]]
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
    registry = registry or os.environ.get(REGISTRY_ENV)
    if not registry:
        raise PretrainedError(f"Unknown pretrained model '{name}'. Bundled: {', '.join(list_pretrained())}; "
                              f"for others, set {REGISTRY_ENV} to a registry URL.")
    return fetch(name, registry)


def read_manifest(folder):
    """A bundle's manifest; `PretrainedError` if it is missing or not JSON."""
    path = os.path.join(folder, MANIFEST)
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as err:
        raise PretrainedError(f"{path} is missing or corrupt ({err}): reinstall the package or rebuild the "
                              "model with `python -m zoo.pretrained rebuild`.") from err


def verify(folder, filename, manifest=None):
    """Checks one file of a bundle against its manifest's sha256; returns its path."""
    manifest = manifest or read_manifest(folder)
    entry = manifest["files"].get(filename)
    path = os.path.join(folder, filename)
    if entry is None or not os.path.isfile(path):
        raise PretrainedError(f"{path} is missing from the pretrained model '{manifest['name']}'.")
    actual = files.sha256(path)
    if actual != entry["sha256"]:
        raise ChecksumError(f"{path} fails its checksum: sha256 {actual[:16]}... but the manifest says "
                            f"{entry['sha256'][:16]}... (a corrupt or changed file). Reinstall the package, or "
                            f"rebuild it with `python -m zoo.pretrained rebuild {manifest['name']}`.")
    return path


def fetch(name, registry):
    """Downloads model `name` from `registry` into the cache and returns its folder.

    Files go into a hidden temporary folder; it is renamed into place only after every file has
    passed its checksum, so the cache never holds a half-downloaded model under its name.
    """
    root = os.path.join(files.cache_dir(), "pretrained")
    os.makedirs(root, exist_ok=True)
    manifest = _read_json_url(_join(registry, name, MANIFEST))
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise PretrainedError(f"{_join(registry, name, MANIFEST)} has no 'files' table of sha256s.")
    target = os.path.join(root, name)
    with files.atomic_folder(target) as staging:
        for filename in manifest["files"]:
            if os.path.basename(filename) != filename or filename.startswith("."):
                raise PretrainedError(f"The registry's manifest for '{name}' names an unsafe file: {filename!r}.")
            _download(_join(registry, name, filename), os.path.join(staging, filename))
            verify(staging, filename, manifest)
        files.write_json_atomic(os.path.join(staging, MANIFEST), manifest)
    return target


def _join(registry, *parts):
    return registry.rstrip("/") + "/" + "/".join(urllib.parse.quote(part) for part in parts)


def _open_url(url):
    try:
        return urllib.request.urlopen(url, timeout=TIMEOUT_S)
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise PretrainedError(f"Could not fetch {url}: {reason}. Check the registry address "
                              f"({REGISTRY_ENV}) and the network.") from err


def _read_json_url(url):
    with _open_url(url) as response:
        try:
            return json.load(response)
        except json.JSONDecodeError as err:
            raise PretrainedError(f"{url} is not valid JSON ({err}).") from err


def _download(url, path):
    with _open_url(url) as response, open(path, "wb") as f:
        shutil.copyfileobj(response, f)
