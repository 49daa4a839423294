"""`python -m export.serve RUN_DIR`: the web demo (apps/web) on a local port, for one run's decoder.

The page runs the decoder in the browser with onnxruntime-web (WebAssembly); this server only hands
out static files, so it uses the standard library alone and never imports TensorFlow. It serves:

    /                  apps/web/index.html (and the page's .js and .css beside it)
    /decoder.onnx      the run's exported decoder
    /decoder.json      the decoder's facts (ONNX metadata_props, see export.metadata) as JSON, so the
                       page does not parse protobuf
    /ort/<file>        onnxruntime-web's dist files from apps/web/node_modules (wasm as application/wasm)

It binds 127.0.0.1 by default: a demo, not a hardened web server.
"""

import argparse
import json
import os
import sys
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

from export.runtime import load_decoder

WEB_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "apps", "web")
ORT_DIST = os.path.join("node_modules", "onnxruntime-web", "dist")
DECODER = "decoder.onnx"
PAGE_FILES = (".html", ".js", ".css")  # what the page itself is made of; package.json etc. stay private
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript", ".mjs": "text/javascript",
         ".css": "text/css", ".json": "application/json", ".map": "application/json",
         ".wasm": "application/wasm", ".onnx": "application/octet-stream"}


class ServeError(Exception):
    """Something the server needs is missing; the message says which setup step provides it."""


def decoder_path(run_dir):
    """The decoder.onnx of `run_dir` (or `run_dir` itself when it names an .onnx file)."""
    path = run_dir if run_dir.endswith(".onnx") else os.path.join(run_dir, DECODER)
    if not os.path.isfile(path):
        raise ServeError(f"{path} not found: export the run's decoder first with "
                         f"`python -m export {run_dir} --formats onnx`.")
    return path


def make_server(run_dir, host="127.0.0.1", port=0, web_dir=WEB_DIR, quiet=False):
    """A `ThreadingHTTPServer` for the demo of `run_dir`'s decoder; call `serve_forever()` on it.

    Args:
        run_dir: a run directory holding decoder.onnx (`python -m export RUN_DIR --formats onnx`).
        host, port: where to listen; port 0 picks a free port (see `server.server_address`).
        web_dir: the page's folder, with onnxruntime-web installed under node_modules.
        quiet: no log line per request.

    Raises:
        ServeError: no decoder.onnx, a file ONNX Runtime cannot read or without the export's facts,
            or onnxruntime-web not installed; the message says how to fix it.
        OSError: the address is taken or cannot be bound.
    """
    path = decoder_path(run_dir)
    ort_dir = os.path.join(web_dir, ORT_DIST)
    if not os.path.isdir(ort_dir):
        raise ServeError(f"onnxruntime-web is not installed ({ort_dir} is missing): run `npm ci --prefix apps/web` "
                         "(or apps/web/setup.sh, which also installs Chromium for the tests).")
    try:
        facts = load_decoder(path, providers=["CPUExecutionProvider"]).facts
    except Exception as err:  # no facts (ValueError), or ONNX Runtime cannot read the file (its own types)
        raise ServeError(f"{path} is not a decoder exported by `python -m export` ({err}): export it again with "
                         f"`python -m export {run_dir} --formats onnx`.") from None
    routes = {"/": os.path.join(web_dir, "index.html"), "/" + DECODER: path,
              "/decoder.json": json.dumps({"file": os.path.basename(path), **facts}).encode()}

    class Handler(BaseHTTPRequestHandler):
        """GET and HEAD for the routes above; anything else is a 404 (no directory listings)."""

        def do_GET(self):
            self._send(head_only=False)

        def do_HEAD(self):
            self._send(head_only=True)

        def _send(self, head_only):
            url_path = unquote(urlsplit(self.path).path)
            target = routes.get(url_path) or _static_file(url_path, web_dir, ort_dir)
            if target is None:
                self.send_error(HTTPStatus.NOT_FOUND, f"No such file: {url_path}")
                return
            body = target if isinstance(target, bytes) else None
            ext = ".json" if body is not None else os.path.splitext(target)[1]
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", TYPES.get(ext, "application/octet-stream"))
            self.send_header("Content-Length", str(len(body) if body is not None else os.path.getsize(target)))
            self.send_header("Cache-Control", "no-store")  # a re-exported decoder is never stale
            self.end_headers()
            if head_only:
                return
            if body is not None:
                self.wfile.write(body)
            else:
                with open(target, "rb") as f:
                    while chunk := f.read(1 << 20):
                        self.wfile.write(chunk)

        def log_message(self, format, *args):
            if not quiet:
                super().log_message(format, *args)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    server.decoder_path, server.facts = path, facts
    return server


def _static_file(url_path, web_dir, ort_dir):
    """The file behind `/name` (a page file) or `/ort/name` (an onnxruntime-web dist file), or None.
    Only plain names inside those two folders are served: no subfolders, no dot files, no `..`."""
    folder, name = (ort_dir, url_path[len("/ort/"):]) if url_path.startswith("/ort/") else (web_dir, url_path[1:])
    if not name or "/" in name or "\\" in name or name.startswith("."):
        return None
    if folder == web_dir and os.path.splitext(name)[1] not in PAGE_FILES:
        return None
    path = os.path.join(folder, name)
    return path if os.path.isfile(path) else None


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m export.serve", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Serve the web demo for a run's exported decoder: the page (apps/web) runs decoder.onnx in\n"
                    "the browser with onnxruntime-web (WebAssembly), with sliders for the first latent\n"
                    "dimensions, a class picker for conditional models and a button that draws z from the prior.",
        epilog="set-up, once:\n"
               "  python -m export RUN_DIR --formats onnx     # writes RUN_DIR/decoder.onnx\n"
               "  npm ci --prefix apps/web                    # onnxruntime-web, from apps/web/package-lock.json\n\n"
               "then open the printed URL. Exit status: 0 after Ctrl-C, 2 when something above is missing.")
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run directory holding decoder.onnx (or the .onnx file)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on; 0 picks a free one (default: 8000)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default: 127.0.0.1, this machine only; another address exposes "
                             "the demo to the network)")
    parser.add_argument("--quiet", action="store_true", help="no log line per request")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        server = make_server(args.run_dir, args.host, args.port, quiet=args.quiet)
    except ServeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"error: cannot listen on {args.host}:{args.port} ({err.strerror or err}): pick another --port "
              "(0 takes any free one)", file=sys.stderr)
        return 2
    host, port = server.server_address[:2]
    print(f"Serving {server.decoder_path} at http://{host}:{port}/  (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
