"""The bench scripts refuse what they cannot measure with one sentence naming the argument, not a traceback."""

import subprocess
import sys

import pytest

from conftest import MNIST_DIR, REPO_ROOT


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--model", "nowhere"], "--model nowhere is no model folder (it has no config.json)"),
        (["--data_dir", "nowhere"], "--data_dir nowhere has no t10k-images-idx3-ubyte.gz"),
        (["--per_set", "0"], "--per_set must be at least 1, got 0."),
    ],
)
def test_bench_root_names_a_wrong_argument(flags, message):
    result = subprocess.run(
        [sys.executable, "bench/bench_root.py", "--data_dir", str(MNIST_DIR), *flags],
        cwd=REPO_ROOT, capture_output=True, text=True,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert message in result.stderr
