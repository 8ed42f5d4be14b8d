"""What bench/gpu.sh runs on: the GPU, torch, and any requirement of ours (setup.cfg) or of our main libraries
that the installed versions do not meet, so a failure later in the log can be traced to its cause.

    python bench/gpu_env.py
"""

import configparser
import importlib.metadata
from pathlib import Path

import torch
from packaging.requirements import Requirement

SETUP_CFG = Path(__file__).resolve().parents[1] / "setup.cfg"
LIBRARIES = ("transformers", "datasets", "evaluate", "accelerate", "huggingface_hub")


def unmet(requirements: list[str], environment: dict[str, str]) -> list[str]:
    problems = []
    for text in requirements:
        requirement = Requirement(text)
        if requirement.marker is not None and not requirement.marker.evaluate(environment):
            continue
        try:
            version = importlib.metadata.version(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            problems.append(f"{requirement} (not installed)")
            continue
        if not requirement.specifier.contains(version, prereleases=True):
            problems.append(f"{requirement} (installed: {version})")
    return problems


def main() -> None:
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA device"
    print(f"device: {device}; torch {torch.__version__}")
    print(", ".join(f"{name} {importlib.metadata.version(name)}" for name in LIBRARIES))
    setup = configparser.ConfigParser()
    setup.read(SETUP_CFG)
    ours = [line for line in setup["options"]["install_requires"].splitlines() if line.strip()]
    problems = unmet(ours, {"extra": ""})
    for library in LIBRARIES:
        problems += [f"{library} needs {problem}" for problem in unmet(importlib.metadata.requires(library) or [], {"extra": ""})]
    print("\n".join(f"warning: unmet requirement {problem}" for problem in problems) or "all requirements met")


if __name__ == "__main__":
    main()
