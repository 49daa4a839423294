"""Every ```python block of README.md runs as written.

The blocks run one after another in one fresh interpreter (TensorFlow loads once), each in a
namespace of its own, so a block that leans on another block's imports fails. They run in a
temporary folder holding what they name: `runs/cvae`, a finished run of the bundled `cvae-mnist5k`
model with its exported decoders and encoders. A failure names the block by its line and first line.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import pytest

from conftest import write_run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")

RUNNER = """
import json, sys, time, traceback, warnings

blocks = json.load(open(sys.argv[1]))
results = {}
for block in blocks:
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            exec(compile(block["code"], block["name"], "exec"), {"__name__": "__main__"})
            error = None
        except BaseException:
            error = traceback.format_exc(limit=-3)
    noted = sorted({f"{w.category.__name__}: {w.message}" for w in caught
                    if "keras" in w.filename or "zoo" in w.filename or w.filename == block["name"]})
    results[block["name"]] = {"error": error, "warnings": noted, "seconds": round(time.perf_counter() - start, 1)}
json.dump(results, open(sys.argv[2], "w"))
"""


def python_blocks(path=README):
    """`[{"name": "README.md:LINE: first line", "code": ...}]` for every ```python block."""
    with open(path) as f:
        text = f.read()
    blocks = []
    for match in re.finditer(r"^```python\n(.*?)^```", text, re.MULTILINE | re.DOTALL):
        code = match.group(1)
        offset, first = next(((i, s.strip()) for i, s in enumerate(code.splitlines()) if s.strip()), (0, ""))
        line = text.count("\n", 0, match.start()) + 2 + offset  # of the block's first line of code
        blocks.append({"name": f"README.md:{line}: {first}", "code": code})
    return blocks


BLOCKS = python_blocks()


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Runs every block; returns {block name: {"error", "warnings", "seconds"}}."""
    import zoo

    folder = tmp_path_factory.mktemp("readme")
    bundle = os.path.join(ROOT, "zoo", "pretrained", "cvae-mnist5k")
    run = write_run(str(folder / "runs" / "cvae"), zoo.load_pretrained("cvae-mnist5k", part="model"), "cvae",
                    dataset={"name": "mnist5k"})
    for name in ("decoder.onnx", "decoder.tflite", "decoder.tflite.json", "encoder.onnx", "encoder.tflite",
                 "encoder.tflite.json"):
        shutil.copy(os.path.join(bundle, name), run)
    (folder / "blocks.json").write_text(json.dumps(BLOCKS))
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = os.pathsep.join([ROOT, env.get("PYTHONPATH", "")])
    done = subprocess.run([sys.executable, "-c", RUNNER, "blocks.json", "results.json"], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((folder / "results.json").read_text())


def test_the_readme_has_python_blocks():
    assert len(BLOCKS) >= 4 and all(block["code"].strip() for block in BLOCKS)


@pytest.mark.parametrize("block", BLOCKS, ids=[b["name"].split(":")[1] for b in BLOCKS])
def test_python_block_runs(block, results):
    result = results[block["name"]]
    assert result["error"] is None, f"{block['name']} failed:\n{result['error']}"
    assert not result["warnings"], f"{block['name']} warned: {result['warnings']}"


def test_a_failing_block_is_named_by_its_first_line(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# t\n\n```python\n\nx = 1\nprint(undefined_name)\n```\n")
    blocks = python_blocks(str(readme))
    assert [b["name"] for b in blocks] == ["README.md:5: x = 1"]
    (tmp_path / "blocks.json").write_text(json.dumps(blocks))
    subprocess.run([sys.executable, "-c", RUNNER, "blocks.json", "results.json"], cwd=tmp_path, check=True,
                   timeout=60)
    error = json.loads((tmp_path / "results.json").read_text())["README.md:5: x = 1"]["error"]
    assert 'File "README.md:5: x = 1", line 3' in error and "NameError" in error
