"""Export a finished run's decoder: convert, check parity, keep what passes, record it.

The export works on a copy of the run (`zoo.artifacts.update_run`: every artifact verified first,
the run locked, the copy swapped in whole when the manifest is written), so a kill or an error
leaves the run as it was. Inside the copy each file is written to a hidden staging folder
(`.export/`) and moved into place only after it passes parity, so a file over its tolerance is
never kept under its final name. A failing format also removes the file an earlier export left
under that name, since it no longer matches the report.

A vqvae with a PixelCNN prior also gets its prior's one-step network, in the same formats as the
decoder (`export.formats.PRIOR_FORMATS`: prior.onnx, prior.tflite), checked against the Keras
network and recorded in the same way, so that `export.runtime` samples codes without TensorFlow.

`parts` adds the encoder (`export.formats.ENCODER_FORMATS`: encoder.onnx, encoder.tflite), checked
against the model's own `export_encoder` function, with the test set's outlier-score quantiles in
its facts (`export.metadata.outlier_calibration`), so that `export.runtime.load_model` encodes,
restyles and scores images without TensorFlow.
"""

import os
import shutil

from export import parity
from export.formats import ENCODER_FORMATS, FORMATS, PRIOR_FORMATS, companion_formats
from export.metadata import decoder_facts, encoder_facts, outlier_calibration, prior_network_facts
from export.runtime import metadata_path
from export.serving import serving_decoder, serving_encoder, serving_prior
from zoo import artifacts

STAGING = ".export"
PARTS = ("decoder", "encoder")


class UnknownFormat(ValueError):
    """An export format name that `FORMATS` does not have."""


def parse_formats(formats):
    """Format names from a comma-separated string or a sequence; `UnknownFormat` names the known ones."""
    return _parse_names(formats, FORMATS, "export format")


def parse_parts(parts):
    """Part names ("decoder", "encoder") from a comma-separated string or a sequence."""
    return _parse_names(parts, PARTS, "part")


def _parse_names(names, known, what):
    names = [name.strip() for name in (names.split(",") if isinstance(names, str) else names)]
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        raise UnknownFormat(f"Unknown {what}(s) {unknown or names}: expected names from {', '.join(known)}.")
    return list(dict.fromkeys(names))


def export_run(run_dir, formats=tuple(FORMATS), print_fn=print, parts=("decoder",)):
    """Exports the decoder (and encoder) of the finished run `run_dir` in `formats` and records the result.

    Args:
        run_dir: a finished run directory (every artifact is verified against the manifest's
            checksums first).
        formats: names from `FORMATS` (or one comma-separated string).
        print_fn: where progress lines go.
        parts: "decoder" and/or "encoder" (or one comma-separated string); the encoder is written
            in fp32 only: encoder.onnx with "onnx", encoder.tflite with any TFLite format.

    Returns:
        `{format: report}` as written under the manifest's `export` key: the file, its sha256 and
        size when kept, and the parity report (`export.parity.check`); for a PixelCNN prior also
        "prior-onnx" / "prior-tflite" (`export.parity.check_prior`); for the encoder
        "encoder-onnx" / "encoder-tflite" (`export.parity.check_encoder`).

    Raises:
        zoo.artifacts.RunError: not a finished run, a missing or changed artifact (named), or a
            run that another process is writing.
        UnknownFormat: an unknown format or part (a ValueError).

    Example:
        report = export_run("runs/cvae", "onnx,tflite")
        assert all(entry["passed"] for entry in report.values())
    """
    formats, parts = parse_formats(formats), parse_parts(parts)
    with artifacts.update_run(run_dir) as (run, manifest):  # verified, locked; swapped in whole at the end
        model = artifacts.load_model(os.path.join(run, artifacts.MODEL_FILE))
        decoder = serving_decoder(model)
        facts = decoder_facts(model, manifest, decoder)
        staging = os.path.join(run, STAGING)
        os.makedirs(staging)
        report = {}

        def export(name, fmt, network, network_facts, check):
            report[name] = _export_one(fmt, network, network_facts, lambda path: check(path, fmt), staging, run)
            print_fn(_summary(name, report[name]), flush=True)

        if "decoder" in parts:
            reference = parity.reference_decoder(os.path.join(run, artifacts.SAVED_MODEL_DIR))
            for name in formats:
                export(name, FORMATS[name], decoder, facts,
                       lambda path, fmt: parity.check(path, reference, fmt.metric, fmt.tolerance))
            prior = serving_prior(model)
            for name in companion_formats("prior", formats) if prior is not None else []:
                logits = lambda codes: prior({"codes": codes})["logits"].numpy()
                export(name, PRIOR_FORMATS[name], prior, prior_network_facts(model, manifest, prior),
                       lambda path, fmt: parity.check_prior(path, logits, fmt.metric, fmt.tolerance))
        if "encoder" in parts:
            encoder, outlier = serving_encoder(model), outlier_calibration(run, model, manifest, print_fn)
            for name in companion_formats("encoder", formats):
                export(name, ENCODER_FORMATS[name], encoder, encoder_facts(model, facts, encoder, outlier),
                       lambda path, fmt: parity.check_encoder(path, parity.reference_encoder(model), fmt.metric,
                                                              fmt.tolerance))
        shutil.rmtree(staging)
        artifacts.merge(manifest, export=report)
    return report


def _export_one(fmt, network, facts, check, staging, run_dir):
    """Writes one format of `network`, checks it (`check(path)` -> parity report), and moves it
    (and its sidecar) into the run if it passes."""
    staged = os.path.join(staging, fmt.filename)
    fmt.write(network, staged, facts)
    result = {"file": fmt.filename, **check(staged)}
    for filename in (fmt.filename, metadata_path(fmt.filename)):
        source, target = os.path.join(staging, filename), os.path.join(run_dir, filename)
        if result["passed"] and os.path.exists(source):
            os.replace(source, target)
        elif os.path.exists(target):
            os.remove(target)
    if result["passed"]:
        target = os.path.join(run_dir, fmt.filename)
        result.update(sha256=artifacts.sha256(target), bytes=os.path.getsize(target))
    return result


def _summary(name, result):
    verdict = "ok" if result["passed"] else "FAILED, file removed"
    size = f"  {result['bytes'] / 1024:.1f} KiB" if result["passed"] else ""
    return (f"{name:20s} {result['file']:28s} {result['metric']} {result[result['metric']]:.2e} "
            f"(tolerance {result['tolerance']:g})  {verdict}{size}")
