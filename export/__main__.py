"""`python -m export RUN_DIR [--formats ...] [--parts decoder,encoder]`: export a finished run's decoder
(and encoder).

Exit status: 0 when every file passed parity, 1 when a file failed (it is removed), 2 for a bad
run directory or an unknown format (one line on stderr, no traceback).
"""

import argparse
import sys

import zoo
from export.formats import FORMATS  # no TensorFlow: `--help` answers at once
from zoo.cli import add_verbose


def build_parser():
    table = "\n".join(f"  {name:20s} {fmt.filename:28s} parity: {fmt.metric} <= {fmt.tolerance:g}"
                      for name, fmt in FORMATS.items())
    parser = argparse.ArgumentParser(
        prog="python -m export", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Export the decoder (and with --parts decoder,encoder the encoder) of a finished run "
                    "directory to ONNX and TFLite, check each file against the run's model, delete any file "
                    "over its tolerance, and record the parity report and checksums in the run's manifest.json.",
        epilog=f"formats (file written into RUN_DIR, tolerance on the mean images):\n{table}\n"
               "the encoder is written in fp32 with the same tolerances (relative beyond magnitude 1): encoder.onnx "
               "with onnx, encoder.tflite with any tflite format\n\n"
               "exit status: 0 all passed, 1 a file failed parity (removed), 2 bad run directory, format or part")
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a finished run directory (written by a recipe)")
    parser.add_argument("--formats", default=",".join(FORMATS),
                        help="comma-separated formats to write (default: all)")
    parser.add_argument("--parts", default="decoder",
                        help="comma-separated parts to export: decoder, encoder (default: decoder); the encoder "
                             "is what apps need to reconstruct, restyle and score images")
    add_verbose(parser)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    zoo.import_tensorflow(args.verbose)  # before anything else imports it: its logs stay hidden
    from export.pipeline import UnknownFormat, export_run, parse_formats, parse_parts
    from zoo import artifacts

    try:
        report = export_run(args.run_dir, parse_formats(args.formats), parts=parse_parts(args.parts))
    except (artifacts.RunError, UnknownFormat) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    failed = [name for name, result in report.items() if not result["passed"]]
    if failed:
        print(f"error: {', '.join(failed)} failed parity against the SavedModel; the file(s) were removed "
              f"(see 'export' in {args.run_dir}/manifest.json)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
