"""Train the MNIST Vision Transformer with the Hugging Face Trainer, then report on the test split.

    python train.py --data_dir ../shared/mnist --output_dir runs/mnist-vit
    python train.py recipes/best.yaml --data_dir ../shared/mnist   # a recipe, then flags that override it
    accelerate launch train.py --data_dir ../shared/mnist  # several GPUs or machines
    python train.py --do_predict --model_name_or_path runs/mnist-vit --data_dir ../shared/mnist --output_dir report
    python train.py --model_name_or_path google/vit-base-patch16-224 --ignore_mismatched_sizes --data_dir ../shared/mnist

Every `TrainingArguments` flag works (`--bf16`, `--torch_compile`, `--report_to tensorboard`, `--push_to_hub`, ...),
and so do the flags of transformers' `run_image_classification.py` (`--train_dir`, `--train_val_split`, ...);
`python train.py --help` lists them all.
"""

import sys

if __name__ == "__main__" and not {"-h", "--help"} & set(sys.argv):
    print("train.py: loading PyTorch and Transformers...", flush=True)  # the imports take seconds

import difflib  # noqa: E402
import json  # noqa: E402

import yaml  # noqa: E402
from transformers import HfArgumentParser  # noqa: E402

from mnist_vit.errors import UserError, exit_status  # noqa: E402
from mnist_vit.data import Augmentation  # noqa: E402
from mnist_vit.training import DataArguments, MnistViTTrainingArguments, ModelArguments, run  # noqa: E402


RECIPE_SUFFIXES = (".json", ".yaml", ".yml")


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
        if value is None:
            raise UserError(f"The recipe {path} gives no value for {key}: write `{key}: VALUE`, or remove the line.")
        if isinstance(value, dict):  # a dict flag (--accelerator_config) takes JSON on the command line
            value = json.dumps(value)
        flags += [f"--{key}", *map(str, value if isinstance(value, list) else [value])]
    return flags


class ArgumentParser(HfArgumentParser):
    def error(self, message: str):
        """A bad value: one sentence (argparse prints its whole usage first, 140 lines for train.py)."""
        raise UserError(f"{message}; `python train.py --help` lists the flags.")


def build_parser() -> ArgumentParser:
    return ArgumentParser((ModelArguments, DataArguments, Augmentation, MnistViTTrainingArguments))


def parse_arguments(argv: list[str]) -> tuple[ModelArguments, DataArguments, Augmentation, MnistViTTrainingArguments]:
    recipe = argv[0] if argv and argv[0].endswith(RECIPE_SUFFIXES) else None
    recipe_part = recipe_flags(recipe) if recipe else []
    parser = build_parser()
    try:  # later flags win
        *arguments, unknown = parser.parse_args_into_dataclasses(
            recipe_part + argv[bool(recipe):], return_remaining_strings=True
        )
    except ValueError as err:  # TrainingArguments' checks of flag combinations
        raise UserError(str(err)) from err
    if unknown:
        raise UserError(unknown_argument(parser, unknown[0], recipe, recipe_part))
    return tuple(arguments)


def unknown_argument(parser: ArgumentParser, argument: str, recipe: str | None, recipe_part: list[str]) -> str:
    """What is wrong with the first argument no flag takes: a misspelt flag (and the flag meant), or a word
    that is no flag (a recipe not given first, or without its suffix)."""
    if not argument.startswith("-"):
        return (f"{argument!r} is not a flag: a recipe comes first and its name ends in {', '.join(RECIPE_SUFFIXES)}; "
                "flags start with --.")
    flag = argument.split("=")[0]
    where = f" in the recipe {recipe}" if flag in recipe_part else ""
    known = [option for action in parser._actions for option in action.option_strings]
    meant = difflib.get_close_matches(flag, known, n=1)
    hint = f"did you mean {meant[0]}?" if meant else "`python train.py --help` lists the flags."
    return f"Unknown flag {flag}{where}: {hint}"


def main(argv: list[str]) -> None:
    model_args, data_args, augmentation, training_args = parse_arguments(argv)
    results = run(model_args, data_args, augmentation, training_args)
    if training_args.process_index == 0:
        print(summary(results))


def summary(results: dict) -> str:
    """The end of a run in a few lines: scores, calibration, time, and where to look."""
    output_dir = results["output_dir"]
    rows = []
    if "test_accuracy" in results:
        on = "test" if results["test_split"] == "test" else "validation (no test split)"
        rows += [(f"{on} accuracy", f"{results['test_accuracy']:.2%}"), ("macro F1", f"{results['test_f1_macro']:.4f}")]
        calibration = f"{results['test_ece']:.2%}"
        if "temperature" in results:
            calibration += f" ({results['test_ece_uncalibrated']:.2%} before temperature {results['temperature']:.3f})"
        rows.append(("calibration error (ECE)", calibration))
    elif "eval_accuracy" in results:
        rows.append(("validation accuracy", f"{results['eval_accuracy']:.2%}"))
    if "hyperparameters" in results:
        rows.append(("best hyperparameters", f"{results['hyperparameters']} ({output_dir}/best_hyperparameters.json)"))
    if "train_runtime" in results:
        minutes, seconds = divmod(round(results["train_runtime"]), 60)
        rows.append(("training time", f"{minutes} min {seconds} s"))
    if "test_accuracy" in results:
        rows.append(("report", f"{output_dir}/classification_report.txt, test_results.json, *.png"))
    if "train_runtime" in results:
        rows.append(("model", output_dir))
    if "url" in results:
        rows.append(("published", results["url"]))
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:>{width}}  {value}" for name, value in rows)


if __name__ == "__main__":
    sys.exit(exit_status(lambda: main(sys.argv[1:])))
