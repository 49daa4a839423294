"""`python -m export.serve RUN_DIR`: the web demo (apps/web) on a local port, for one run's exported model.

The page runs the decoder, and the encoder when the run has one, in the browser with onnxruntime-web
(WebAssembly); this server only hands out static files, so it uses the standard library alone and
never imports TensorFlow. It serves:

    /                  apps/web/index.html (and the page's .js and .css beside it)
    /decoder.onnx      the run's exported decoder
    /decoder.json      the decoder's facts (ONNX metadata_props, see export.metadata) as JSON, so the
                       page does not parse protobuf
    /encoder.onnx      the run's exported encoder (`python -m export RUN_DIR --parts decoder,encoder`),
    /encoder.json      and its facts; 404 while the run has none
    /parts.json        the parts the run has now, ["decoder"] or ["decoder", "encoder"]: the page asks
                       here first, and shows the decoder alone without an encoder
    /ort/<file>        onnxruntime-web's dist files from apps/web/node_modules (wasm as application/wasm)
    /pako/<file>       pako's dist files (zlib in JavaScript: the PNG size of the outlier score)

It binds 127.0.0.1 by default: a demo, not a production web server. Still, it serves only files
that lie, after symlinks, in those folders; it never writes the request path into a header; it
closes a connection that sends nothing for `IDLE_TIMEOUT` seconds; and it reads a model's facts
again whenever its .onnx file changes on disk, so a re-export needs no restart.
"""

import argparse
import json
import os
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

from export.runtime import load_decoder
from export.runtime.encoder import load_encoder

WEB_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "apps", "web")
ORT_DIST = os.path.join("node_modules", "onnxruntime-web", "dist")
PAKO_DIST = os.path.join("node_modules", "pako", "dist")
DECODER, ENCODER = "decoder.onnx", "encoder.onnx"
NPM_CI = "run `npm ci --prefix apps/web` (or apps/web/setup.sh, which also installs Chromium for the tests)"
IDLE_TIMEOUT = 30  # seconds: a connection silent that long (idle, or stuck mid-request) is closed
# Cross-origin isolation: the page may then share memory with workers, which onnxruntime-web's
# WebAssembly threads need. Everything the page loads comes from this server, so nothing is blocked.
ISOLATION = {"Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp"}
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


def make_server(run_dir, host="127.0.0.1", port=0, web_dir=None, quiet=False):
    """A `ThreadingHTTPServer` for the demo of `run_dir`'s decoder; call `serve_forever()` on it.

    Args:
        run_dir: a run directory holding decoder.onnx (`python -m export RUN_DIR --formats onnx`).
        host, port: where to listen; port 0 picks a free port (see `server.server_address`).
        web_dir: the page's folder, with onnxruntime-web installed under node_modules (default:
            `WEB_DIR`, apps/web).
        quiet: no log line per request (a missing or broken decoder is still logged, one line).

    The handler's `timeout` (`server.RequestHandlerClass.timeout`, `IDLE_TIMEOUT` seconds) bounds
    every read and write on a connection.

    Raises:
        ServeError: no decoder.onnx, a file ONNX Runtime cannot read or without the export's facts,
            or onnxruntime-web not installed; the message says how to fix it.
        OSError: the address is taken or cannot be bound.
    """
    path, web_dir = decoder_path(run_dir), web_dir or WEB_DIR
    folders = {"/": os.path.realpath(web_dir)}
    for prefix, package, dist in [("/ort/", "onnxruntime-web", ORT_DIST), ("/pako/", "pako", PAKO_DIST)]:
        folder = os.path.join(web_dir, dist)
        if not os.path.isdir(folder):
            raise ServeError(f"{package} is not installed ({folder} is missing): {NPM_CI}.")
        folders[prefix] = os.path.realpath(folder)
    export = f"`python -m export {run_dir} --formats onnx`"
    models = {"decoder": ModelFacts(path, "decoder", decoder_facts, export),
              "encoder": ModelFacts(os.path.join(os.path.dirname(path), ENCODER), "encoder", encoder_facts,
                                    f"`python -m export {run_dir} --parts decoder,encoder --formats onnx`")}
    models["decoder"].json()  # a file that is not a decoder stops the server before it starts

    class Handler(BaseHTTPRequestHandler):
        """GET and HEAD for the routes above; anything else is a 404 (no directory listings)."""

        timeout = IDLE_TIMEOUT

        def do_GET(self):
            self._send(head_only=False)

        def do_HEAD(self):
            self._send(head_only=True)

        def _send(self, head_only):
            url_path = unquote(urlsplit(self.path).path)
            stem, extension = os.path.splitext(url_path)
            if url_path == "/parts.json":
                content = json.dumps([part for part, model in models.items() if os.path.isfile(model.path)]).encode()
            elif stem[1:] in models and extension in (".json", ".onnx"):
                model = models[stem[1:]]
                try:
                    content = model.json() if extension == ".json" else open(model.path, "rb")
                except FileNotFoundError:
                    if model.part == "encoder":  # a run without an encoder: the page shows the decoder alone
                        return self.send_error(HTTPStatus.NOT_FOUND, explain=f"{model.path} not found: {model.how}")
                    return self._fail(HTTPStatus.NOT_FOUND, f"{path} is gone: export the run's decoder again with "
                                                            f"{export}.")
                except ServeError as err:
                    return self._fail(HTTPStatus.SERVICE_UNAVAILABLE, str(err))
            else:
                content = _open_static(url_path, folders)
                if content is None:  # the path goes into the body only, escaped by send_error
                    return self.send_error(HTTPStatus.NOT_FOUND, explain=f"No such file: {url_path}")
            self._reply(content, head_only)

        def _reply(self, content, head_only):
            """200 with `content`: JSON bytes, or an open file that is read out and closed."""
            if isinstance(content, bytes):
                kind, size = TYPES[".json"], len(content)
            else:
                kind = TYPES.get(os.path.splitext(content.name)[1], "application/octet-stream")
                size = os.fstat(content.fileno()).st_size
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(size))
            self.send_header("Cache-Control", "no-store")  # a re-exported decoder is never stale
            for header, value in ISOLATION.items():
                self.send_header(header, value)
            self.end_headers()
            if isinstance(content, bytes):
                if not head_only:
                    self.wfile.write(content)
                return
            with content:
                while not head_only and (chunk := content.read(1 << 20)):
                    self.wfile.write(chunk)

        def _fail(self, status, message):
            """`status` with `message` in the body, and `message` as one log line, even when quiet."""
            super().log_message("%s", message)
            self.send_error(status, explain=message)

        def log_message(self, format, *args):
            if not quiet:
                super().log_message(format, *args)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    server.decoder_path = path
    return server


class ModelFacts:
    """decoder.json or encoder.json for the model file on disk now: its facts are read again whenever
    the file changes (a re-export replaces it), so the page never gets another file's facts."""

    def __init__(self, path, part, read, how):
        """`read(path)` gives the facts of the `part` file `path`; `how` is the command that exports it."""
        self.path, self.part, self.read, self.how = path, part, read, how
        self._lock = threading.Lock()
        self._stamp = self._json = None

    def json(self):
        """The facts' JSON bytes, with the file's name under "file".

        Raises:
            FileNotFoundError: the file is gone (or, for an encoder, was never exported).
            ServeError: the file is not a `part` that `export.runtime` can read.
        """
        with self._lock:
            stat = os.stat(self.path)
            stamp = (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)
            if stamp != self._stamp:
                try:
                    facts = self.read(self.path)
                except Exception as err:  # no facts (ValueError), or ONNX Runtime cannot read the file (its own types)
                    article = "an" if self.part[0] in "aeiou" else "a"
                    raise ServeError(f"{self.path} is not {article} {self.part} exported by `python -m export` ({err}): "
                                     f"export it again with {self.how}.") from None
                self._json = json.dumps({"file": os.path.basename(self.path), **facts}).encode()
                self._stamp = stamp
            return self._json


def decoder_facts(path):
    """The facts of a decoder file, checked by `export.runtime.load_decoder`."""
    return load_decoder(path, providers=["CPUExecutionProvider"]).facts


def encoder_facts(path):
    """The facts of an encoder file, checked by `export.runtime.encoder.load_encoder`."""
    return load_encoder(path, providers=["CPUExecutionProvider"]).facts


def _open_static(url_path, folders):
    """The open file behind `/` (index.html), `/name` (a page file), `/ort/name` (an onnxruntime-web
    dist file) or `/pako/name` (a pako dist file), or None. Only plain names are served: no
    subfolders, no dot files, no `..`, and no symlink whose target lies outside its folder
    (`folders` maps each URL prefix to its folder's real path)."""
    prefix = next((prefix for prefix in folders if prefix != "/" and url_path.startswith(prefix)), "/")
    folder, name = folders[prefix], url_path[len(prefix):] or ("index.html" if prefix == "/" else "")
    if not name or "/" in name or "\\" in name or name.startswith("."):
        return None
    if prefix == "/" and os.path.splitext(name)[1] not in PAGE_FILES:
        return None
    path = os.path.join(folder, name)
    if not os.path.isfile(path) or os.path.dirname(os.path.realpath(path)) != folder:
        return None
    try:
        return open(path, "rb")
    except OSError:  # gone or unreadable since the check
        return None


def port_number(text):
    """argparse type for --port: an integer in 0..65535 (0 picks a free port)."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port in 0..65535, received {text!r}")
    return port


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m export.serve", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Serve the web demo for a run's exported model: the page (apps/web) runs decoder.onnx in\n"
                    "the browser with onnxruntime-web (WebAssembly), with sliders for the first latent\n"
                    "dimensions, a class picker for conditional models and a button that draws z from the prior.\n"
                    "When the run also has encoder.onnx, a drawing pad (and an upload button) shows the\n"
                    "reconstruction, the outlier score with its verdict, and the image restyled as every class.",
        epilog="set-up, once:\n"
               "  python -m export RUN_DIR --formats onnx     # writes RUN_DIR/decoder.onnx\n"
               "  python -m export RUN_DIR --parts decoder,encoder --formats onnx   # and encoder.onnx\n"
               "  npm ci --prefix apps/web                    # onnxruntime-web and pako, from apps/web/package-lock.json\n\n"
               "then open the printed URL. Exit status: 0 after Ctrl-C; 2 when something above is missing or\n"
               "the port is out of range or taken.")
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run directory holding decoder.onnx (or the .onnx file)")
    parser.add_argument("--port", type=port_number, default=8000,
                        help="port to listen on, 0..65535; 0 picks a free one (default: 8000)")
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
