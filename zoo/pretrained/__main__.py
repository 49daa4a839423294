"""python -m zoo.pretrained {list,verify,rebuild}: inspect, check and re-create pretrained models.

    python -m zoo.pretrained list                 # names, variants, sizes and headline metrics
    python -m zoo.pretrained verify               # every bundled file against its sha256
    python -m zoo.pretrained rebuild cvae-mnist5k # retrain with its recipe, compare, replace

Exit codes: 0 done, 1 a checksum failed or rebuilt metrics differ, 2 bad arguments.
"""

import argparse
import sys

from zoo import pretrained


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m zoo.pretrained", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="the pretrained models and their metrics")
    verify = commands.add_parser("verify", help="check bundled files against their checksums")
    verify.add_argument("names", nargs="*", help="models to check (default: all bundled)")
    rebuild = commands.add_parser("rebuild", help="re-create bundles with their recipes (needs a source checkout)")
    rebuild.add_argument("names", nargs="*", help=f"models to rebuild (default: {', '.join(pretrained.RECIPES)})")
    rebuild.add_argument("--check", action="store_true", help="compare the rebuilt metrics, keep the bundle")
    rebuild.add_argument("--force", action="store_true", help="replace the bundle even when metrics differ")
    args = parser.parse_args(argv)

    try:
        if args.command == "list":
            for name in pretrained.list_pretrained():
                print(_describe(name))
            return 0
        if args.command == "verify":
            for name in args.names or pretrained.list_pretrained():
                folder = pretrained.locate(name)
                manifest = pretrained.read_manifest(folder)
                for filename in manifest["files"]:
                    pretrained.verify(folder, filename, manifest)
                print(f"{name}: {len(manifest['files'])} files ok")
            return 0
        from zoo.pretrained import build

        unknown = [name for name in args.names if name not in pretrained.RECIPES]
        if unknown:
            parser.error(f"no recipe for {', '.join(unknown)}: expected names from {', '.join(pretrained.RECIPES)}")
        results = [build.rebuild(name, check_only=args.check, force=args.force) for name in
                   args.names or pretrained.RECIPES]
        return 0 if all(results) else 1
    except pretrained.ChecksumError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except pretrained.PretrainedError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


HEADLINE = ("conditional_accuracy", "test_reconstruction_mse", "codebook_usage", "mig")


def _describe(name):
    manifest = pretrained.read_manifest(pretrained.locate(name))
    size = sum(entry["bytes"] for entry in manifest["files"].values())
    headline = {key: value for key, value in manifest.get("metrics", {}).items()  # a registry's may have none
                if (key.startswith("test_nll") or key in HEADLINE) and isinstance(value, (int, float))}
    facts = "  ".join(f"{key} {value:.4g}" for key, value in headline.items())
    return f"{name:20s} {manifest.get('variant', '?'):9s} {size / 2**20:5.2f} MiB  {facts}"


if __name__ == "__main__":
    sys.exit(main())
