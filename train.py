"""Train the MNIST Vision Transformer with the Hugging Face Trainer, then report on the test split.

    python train.py --data_dir ../shared/mnist --output_dir runs/mnist-vit
    python train.py recipes/best.yaml --data_dir ../shared/mnist   # a recipe, then flags that override it
    accelerate launch train.py --data_dir ../shared/mnist  # several GPUs or machines
    python train.py --eval_only --model_name_or_path runs/mnist-vit --data_dir ../shared/mnist

Every `TrainingArguments` flag works (`--bf16`, `--torch_compile`, `--report_to tensorboard`, ...);
`python train.py --help` lists them all.
"""

import sys

import yaml
from transformers import HfArgumentParser

from mnist_vit.training import DataArguments, MnistViTTrainingArguments, ModelArguments, UserError, run


def recipe_flags(path: str) -> list[str]:
    """A JSON or YAML recipe (`key: value` per flag) as the command-line flags it stands for."""
    try:
        with open(path) as file:
            recipe = yaml.safe_load(file)  # JSON is YAML too
    except (OSError, yaml.YAMLError) as err:
        raise UserError(f"Could not read the recipe {path}: {err}") from err
    if not isinstance(recipe, dict):
        raise UserError(f"The recipe {path} must map flag names to values, e.g. `learning_rate: 0.001`.")
    flags = []
    for key, value in recipe.items():
        flags += [f"--{key}", *map(str, value if isinstance(value, list) else [value])]
    return flags


def parse_arguments(argv: list[str]) -> tuple[ModelArguments, DataArguments, MnistViTTrainingArguments]:
    if argv and argv[0].endswith((".json", ".yaml", ".yml")):
        argv = recipe_flags(argv[0]) + argv[1:]  # later flags win
    parser = HfArgumentParser((ModelArguments, DataArguments, MnistViTTrainingArguments))
    try:
        return parser.parse_args_into_dataclasses(argv)
    except ValueError as err:  # TrainingArguments' checks of flag combinations
        raise UserError(str(err)) from err


def main(argv: list[str]) -> int:
    try:
        model_args, data_args, training_args = parse_arguments(argv)
        results = run(model_args, data_args, training_args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for key in ("test_accuracy", "test_f1_macro", "eval_accuracy", "hyperparameters"):
        if key in results and training_args.process_index == 0:
            print(f"{key}: {results[key]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
