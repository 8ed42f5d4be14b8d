"""The tests' own environment (conftest.py): caches in the session's temporary folder, whatever the user's shell says."""

import os
import subprocess
import sys
from pathlib import Path

import datasets
import evaluate
import huggingface_hub
import pytest

from conftest import SESSION_FOLDER


def test_caches_live_in_the_sessions_temporary_folder_and_the_hub_is_online():
    caches = {
        "hub": huggingface_hub.constants.HF_HUB_CACHE,
        "token": huggingface_hub.constants.HF_TOKEN_PATH,
        "datasets": datasets.config.HF_DATASETS_CACHE,
        "evaluate modules": evaluate.config.HF_MODULES_CACHE,
        "evaluate": evaluate.config.HF_EVALUATE_CACHE,
    }
    for name, path in caches.items():
        assert Path(path).is_relative_to(SESSION_FOLDER), (name, path)
    assert not huggingface_hub.constants.HF_HUB_OFFLINE and not datasets.config.HF_HUB_OFFLINE
    assert huggingface_hub.constants.ENDPOINT == "https://huggingface.co"
    assert huggingface_hub.get_token() is None


@pytest.mark.slow
def test_the_users_shell_changes_no_outcome(tmp_path):
    """The test above, in a pytest whose shell asks for offline mode, another endpoint, a token and other caches."""
    shell = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9", "HF_TOKEN": "hf_user",
             "HF_HOME": str(tmp_path / "home"), "HF_DATASETS_CACHE": str(tmp_path / "datasets")}
    test = f"{Path(__file__).name}::test_caches_live_in_the_sessions_temporary_folder_and_the_hub_is_online"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test], cwd=Path(__file__).parent,
        env={**os.environ, **shell}, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert not any(tmp_path.iterdir()), "the shell's folders were written to"
