"""`python -m export.serve` as a server, without a browser: what it refuses, when it lets go of a
connection, how it follows the decoder file on disk, and its command line's errors.

Each server binds 127.0.0.1 port 0 in a thread, serves a copy of a bundled pretrained decoder and
a small web folder of its own, and is shut down at the end; every socket read has a timeout.
"""

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request

import pytest

from export import serve
from export.runtime import load_decoder
from export.runtime.model import load_model
from zoo import pretrained

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WAIT = 10  # seconds any read from the server may take before the test fails


def pretrained_file(name, filename="decoder.onnx"):
    """A checksum-verified file of a bundled pretrained model."""
    folder = pretrained.locate(name)
    pretrained.verify(folder, filename)
    return os.path.join(folder, filename)


@pytest.fixture
def run_dir(tmp_path):
    """A run folder holding a copy of the pretrained cvae-mnist5k decoder, free to replace or delete."""
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(pretrained_file("cvae-mnist5k"), run / "decoder.onnx")
    return run


@pytest.fixture
def web_dir(tmp_path):
    """A page folder with one file of each kind and stand-in onnxruntime-web and pako dist folders."""
    web = tmp_path / "web"
    (web / serve.ORT_DIST).mkdir(parents=True)
    (web / serve.PAKO_DIST).mkdir(parents=True)
    (web / "index.html").write_text("<!doctype html><title>demo</title>")
    (web / "demo.js").write_text("export {};")
    (web / serve.ORT_DIST / "ort.wasm.min.mjs").write_text("export {};")
    (web / serve.PAKO_DIST / "pako.esm.mjs").write_text("export const deflate = null;")
    return web


@contextlib.contextmanager
def serving(run_dir, web_dir):
    """A running server (quiet) and its base URL; shut down and closed on the way out."""
    server = serve.make_server(str(run_dir), web_dir=str(web_dir), quiet=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server, "http://127.0.0.1:%d/" % server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(WAIT)


def get(url):
    """(status, body) of a GET, errors included."""
    try:
        with urllib.request.urlopen(url, timeout=WAIT) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.read()


def raw_exchange(server, request):
    """Sends `request` bytes as they are and returns everything the server answers until it closes."""
    with socket.create_connection(server.server_address[:2], timeout=WAIT) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_a_request_path_never_reaches_the_headers_and_is_escaped_in_the_body(run_dir, web_dir):
    attack = b"/%0d%0aX-Injected:%201%0d%0a%0d%0a<script>alert(1)</script>"
    with serving(run_dir, web_dir) as (server, _):
        reply = raw_exchange(server, b"GET " + attack + b" HTTP/1.0\r\n\r\n")
        unicode_reply = raw_exchange(server, b"GET /%E2%80%A8%C3%A9 HTTP/1.0\r\n\r\n")  # not latin-1
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.0 404 Not Found", reply
    assert not any(line.lower().startswith(b"x-injected") for line in lines), reply
    assert b"<script>" not in body and b"&lt;script&gt;" in body
    assert unicode_reply.startswith(b"HTTP/1.0 404 Not Found\r\n"), unicode_reply


def test_symlinks_out_of_the_served_folders_are_not_served(run_dir, web_dir, tmp_path):
    secret = tmp_path / "secret.html"
    secret.write_text("the secret")
    (web_dir / "evil.html").symlink_to(secret)
    (web_dir / serve.ORT_DIST / "evil.mjs").symlink_to(secret)
    (web_dir / serve.PAKO_DIST / "evil.mjs").symlink_to(secret)
    (web_dir / "alias.html").symlink_to(web_dir / "index.html")  # stays inside: served
    with serving(run_dir, web_dir) as (_, url):
        for name in ["evil.html", "ort/evil.mjs", "pako/evil.mjs", "pako/../ort/evil.mjs", "evil%00.html"]:
            status, body = get(url + name)
            assert status == 404 and b"the secret" not in body, name
        page = (web_dir / "index.html").read_bytes()
        assert get(url) == get(url + "alias.html") == (200, page)
        assert get(url + "ort/ort.wasm.min.mjs") == (200, b"export {};")


def test_idle_and_half_sent_requests_are_closed_after_the_timeout(run_dir, web_dir):
    with serving(run_dir, web_dir) as (server, _):
        timeout = server.RequestHandlerClass.timeout
        assert isinstance(timeout, (int, float)) and 0 < timeout <= 600, f"no idle timeout: {timeout!r}"
        server.RequestHandlerClass.timeout = 0.2
        # an idle connection and one stuck in its headers; each would hold a thread for good
        for request in [b"", b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n"]:
            with socket.create_connection(server.server_address[:2], timeout=WAIT) as sock:
                sock.sendall(request)
                assert sock.recv(65536) == b"", request  # closed by the server, without an answer


def test_decoder_json_follows_a_re_export(run_dir, web_dir, tmp_path):
    other = pretrained_file("vae-mnist5k")
    with serving(run_dir, web_dir) as (_, url):
        status, body = get(url + "decoder.json")
        assert status == 200 and json.loads(body)["num_classes"] == 10
        shutil.copy(other, tmp_path / "new.onnx")
        os.replace(tmp_path / "new.onnx", run_dir / "decoder.onnx")  # as an export replaces its file
        status, body = get(url + "decoder.json")
        assert status == 200
        assert json.loads(body) == {"file": "decoder.onnx", **load_decoder(other).facts}
        assert get(url + "decoder.onnx") == (200, (run_dir / "decoder.onnx").read_bytes())


def test_a_decoder_deleted_or_broken_while_serving_is_answered_and_logged_in_one_line(run_dir, web_dir, capsys):
    with serving(run_dir, web_dir) as (_, url):
        os.remove(run_dir / "decoder.onnx")
        for name in ["decoder.json", "decoder.onnx"]:
            status, body = get(url + name)
            assert status == 404 and b"python -m export" in body, (name, body)
        (run_dir / "decoder.onnx").write_bytes(b"half written")
        status, body = get(url + "decoder.json")
        assert status == 503 and b"python -m export" in body, body
    log = capsys.readouterr().err
    assert "Traceback" not in log, log
    lines = log.splitlines()
    assert len(lines) == 3 and "decoder.onnx is gone" in lines[0] and "decoder.onnx is gone" in lines[1], log
    assert "decoder.onnx is not a decoder exported by" in lines[2], log


@pytest.mark.parametrize("port", ["70000", "-1", "http"])
def test_a_port_out_of_range_exits_2_with_a_message(run_dir, port, capsys):
    with pytest.raises(SystemExit) as exit_:
        serve.main([str(run_dir), "--port", port])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "argument --port: expected a port in 0..65535" in err, err
    assert "Traceback" not in err


def test_a_port_in_use_exits_2_with_one_line(run_dir, web_dir):
    code = ("import sys, export.serve as serve; serve.WEB_DIR = sys.argv[1]; "
            "sys.exit(serve.main(sys.argv[2:]))")
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = subprocess.run([sys.executable, "-c", code, str(web_dir), str(run_dir), "--port", str(port)],
                                capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"error: cannot listen on 127.0.0.1:{port} (")
    assert len(result.stderr.splitlines()) == 1, result.stderr


def test_the_encoder_and_its_facts_are_served_while_the_run_has_one(run_dir, web_dir, capsys):
    encoder = pretrained_file("cvae-mnist5k", "encoder.onnx")
    with serving(run_dir, web_dir) as (_, url):
        assert get(url + "parts.json") == (200, b'["decoder"]')
        for name in ["encoder.json", "encoder.onnx"]:
            status, body = get(url + name)
            assert status == 404 and b"--parts decoder,encoder" in body, (name, body)
        shutil.copy(encoder, run_dir / "encoder.onnx")  # exported while the page is open: no restart
        assert json.loads(get(url + "parts.json")[1]) == ["decoder", "encoder"]
        status, body = get(url + "encoder.json")
        facts = json.loads(body)
        assert status == 200 and facts == {"file": "encoder.onnx", **load_model(run_dir).facts}
        assert facts["part"] == "encoder" and facts["input_shape"] == [28, 28, 1]
        assert get(url + "encoder.onnx") == (200, (run_dir / "encoder.onnx").read_bytes())
        shutil.copy(run_dir / "decoder.onnx", run_dir / "encoder.onnx")  # a decoder is not an encoder
        status, body = get(url + "encoder.json")
        assert status == 503 and b"is not an encoder exported by" in body and b"--parts decoder,encoder" in body
    log = capsys.readouterr().err.splitlines()
    assert len(log) == 1 and "encoder.onnx is not an encoder" in log[0], log  # a run without one is no error


def test_every_answer_isolates_the_page_for_webassembly_threads(run_dir, web_dir):
    with serving(run_dir, web_dir) as (_, url):
        for name in ["", "demo.js", "decoder.json", "decoder.onnx", "parts.json", "ort/ort.wasm.min.mjs",
                     "pako/pako.esm.mjs"]:
            with urllib.request.urlopen(url + name, timeout=WAIT) as response:
                assert response.headers["Cross-Origin-Opener-Policy"] == "same-origin", name
                assert response.headers["Cross-Origin-Embedder-Policy"] == "require-corp", name


def test_missing_pako_says_how_to_install_it(run_dir, web_dir):
    shutil.rmtree(web_dir / serve.PAKO_DIST)
    with pytest.raises(serve.ServeError, match=r"pako is not installed .*run `npm ci --prefix apps/web`"):
        serve.make_server(str(run_dir), web_dir=str(web_dir))
