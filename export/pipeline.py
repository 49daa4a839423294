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
"""

import os
import shutil

from export import parity
from export.formats import FORMATS, PRIOR_FORMATS, prior_formats
from export.metadata import decoder_facts, prior_network_facts
from export.runtime import metadata_path
from export.serving import serving_decoder, serving_prior
from zoo import artifacts

STAGING = ".export"


class UnknownFormat(ValueError):
    """An export format name that `FORMATS` does not have."""


def parse_formats(formats):
    """Format names from a comma-separated string or a sequence; `UnknownFormat` names the known ones."""
    names = [name.strip() for name in (formats.split(",") if isinstance(formats, str) else formats)]
    unknown = [name for name in names if name not in FORMATS]
    if unknown or not names:
        raise UnknownFormat(f"Unknown export format(s) {unknown or names}: expected names from {', '.join(FORMATS)}.")
    return list(dict.fromkeys(names))


def export_run(run_dir, formats=tuple(FORMATS), print_fn=print):
    """Exports the decoder of the finished run `run_dir` in `formats` and records the result.

    Args:
        run_dir: a finished run directory (every artifact is verified against the manifest's
            checksums first).
        formats: names from `FORMATS` (or one comma-separated string).
        print_fn: where progress lines go.

    Returns:
        `{format: report}` as written under the manifest's `export` key: the file, its sha256 and
        size when kept, and the parity report (`export.parity.check`); for a PixelCNN prior also
        "prior-onnx" / "prior-tflite" (`export.parity.check_prior`).

    Raises:
        zoo.artifacts.RunError: not a finished run, a missing or changed artifact (named), or a
            run that another process is writing.
        UnknownFormat: an unknown format (a ValueError).

    Example:
        report = export_run("runs/cvae", "onnx,tflite")
        assert all(entry["passed"] for entry in report.values())
    """
    formats = parse_formats(formats)
    with artifacts.update_run(run_dir) as (run, manifest):  # verified, locked; swapped in whole at the end
        model = artifacts.load_model(os.path.join(run, artifacts.MODEL_FILE))
        reference = parity.reference_decoder(os.path.join(run, artifacts.SAVED_MODEL_DIR))
        decoder = serving_decoder(model)
        facts = decoder_facts(model, manifest, decoder)
        staging = os.path.join(run, STAGING)
        os.makedirs(staging)
        report = {}
        for name in formats:
            check = lambda path, fmt=FORMATS[name]: parity.check(path, reference, fmt.metric, fmt.tolerance)
            report[name] = _export_one(FORMATS[name], decoder, facts, check, staging, run)
            print_fn(_summary(name, report[name]), flush=True)
        prior = serving_prior(model)
        for name in prior_formats(formats) if prior is not None else []:
            fmt, logits = PRIOR_FORMATS[name], lambda codes: prior({"codes": codes})["logits"].numpy()
            check = lambda path, fmt=fmt: parity.check_prior(path, logits, fmt.metric, fmt.tolerance)
            report[name] = _export_one(fmt, prior, prior_network_facts(model, manifest, prior), check, staging, run)
            print_fn(_summary(name, report[name]), flush=True)
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
