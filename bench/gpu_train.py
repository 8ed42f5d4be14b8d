"""Time train.py's own training path: seconds per epoch, and the training time until the test accuracy first
reaches a target.

train.py's arguments (a recipe, then flags) are parsed and run by train.py's and the package's own functions;
the only addition is a benchmark callback on the Trainer that `training.run` builds. After every epoch it
synchronises the device, notes the time, and measures the accuracy on the test split, read from --data_dir's
IDX files (that measurement is not counted as training time). It stops the run at the end of the first epoch past `--budget_s` seconds of
training, or, with `--stop_at_target`, at the first epoch whose test accuracy reaches the target. Then
`training.run` finishes as usual (save, final evaluation, test report). One JSON line is appended to RESULTS.

    python bench/gpu_train.py --name fast --results runs/gpu.jsonl --budget_s 60 --stop_at_target \\
        -- recipes/fast.yaml --data_dir ../shared/mnist --output_dir /tmp/fast
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from unittest import mock

import torch
from transformers import TrainerCallback

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import train  # noqa: E402
from mnist_vit import training  # noqa: E402
from mnist_vit.data import collate_batch, find_idx_files, read_idx  # noqa: E402


class EpochClock(TrainerCallback):
    """Per epoch: training seconds, seconds since the previous epoch ended (the Trainer's own evaluation and
    saving included), training seconds so far, and the test accuracy; the first epoch to reach the target."""

    def __init__(self, data_args: training.DataArguments, target: float, budget_s: float, stop_at_target: bool):
        self.data_args, self.target, self.budget_s, self.stop_at_target = data_args, target, budget_s, stop_at_target
        self.epochs: list[dict] = []
        self.seconds_to_target: float | None = None

    def now(self, device: torch.device) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter()

    def on_train_begin(self, args, state, control, **kwargs):
        # MNIST's test digits as the IDX files hold them: the image processor hands MNIST digits back unchanged.
        images, labels = find_idx_files(self.data_args.data_dir)["test"]
        count = self.data_args.max_eval_samples
        self.test = {
            "pixel_values": torch.from_numpy(read_idx(images)[:count].copy()),
            "labels": torch.from_numpy(read_idx(labels)[:count].astype("int64")),
        }
        self.started = self.last_end = self.now(args.device)
        self.not_training = 0.0  # seconds spent measuring test accuracy

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.epoch_start = self.now(args.device)

    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        end = self.now(args.device)
        trained = end - self.started - self.not_training
        accuracy = test_accuracy(model, self.test, args.device, args.bf16)
        self.epochs.append({
            "epoch": round(state.epoch, 3), "train_s": end - self.epoch_start, "cycle_s": end - self.last_end,
            "trained_s": trained, "test_accuracy": accuracy,
        })
        if accuracy >= self.target and self.seconds_to_target is None:
            self.seconds_to_target = trained
            control.should_training_stop |= self.stop_at_target
        control.should_training_stop |= trained >= self.budget_s
        self.last_end = self.now(args.device)
        self.not_training += self.last_end - end

    def summary(self) -> dict:
        train_s = [epoch["train_s"] for epoch in self.epochs]
        steady = statistics.median(train_s[1:]) if len(train_s) > 1 else None
        return {
            "epochs_done": len(self.epochs),
            "s_per_epoch": steady,  # median over the epochs after the first (which holds compilation)
            "s_per_cycle": statistics.median(e["cycle_s"] for e in self.epochs[1:]) if steady else None,
            "first_epoch_extra_s": train_s[0] - steady if steady else None,
            "trained_s": self.epochs[-1]["trained_s"] if self.epochs else 0.0,
            "best_test_accuracy": max((e["test_accuracy"] for e in self.epochs), default=None),
            "s_to_target": self.seconds_to_target,
            "epochs": self.epochs,
        }


@torch.no_grad()
def test_accuracy(model: torch.nn.Module, test: dict[str, torch.Tensor], device: torch.device, bf16: bool) -> float:
    was_training = model.training
    model.eval()
    correct = 0
    for start in range(0, len(test["labels"]), 2000):
        batch = collate_batch({name: values[start:start + 2000] for name, values in test.items()})
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(pixel_values=batch["pixel_values"].to(device)).logits
        correct += int((logits.argmax(-1).cpu() == batch["labels"]).sum())
    model.train(was_training)
    return correct / len(test["labels"])


class StepProfile(TrainerCallback):
    """torch.profiler over training steps `first` to `first + count` (compiled and warm by then): the operations
    by their own CPU time, and how often the CPU waited for the GPU, written to `path`."""

    def __init__(self, path: str, first: int = 40, count: int = 30):
        self.path, self.first, self.last = path, first, first + count
        self.profiler = torch.profiler.profile(
            activities=[torch.profiler.ProfilerActivity.CPU]
            + ([torch.profiler.ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
        )

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == self.first:
            self.profiler.start()

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.last:
            self.profiler.stop()
            table = self.profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=40, max_name_column_width=70)
            steps = self.last - self.first
            Path(self.path).write_text(f"{steps} training steps (from step {self.first})\n{table}\n")


def trainer_with(*callbacks: TrainerCallback) -> type:
    """`training.AugmentingTrainer` with `callbacks` added, to stand in for it while `training.run` runs."""

    class BenchmarkTrainer(training.AugmentingTrainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            for callback in callbacks:
                self.add_callback(callback)

    return BenchmarkTrainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", required=True, help="the row's name in the results")
    parser.add_argument("--results", required=True, help="a JSON-lines file to append the result to")
    parser.add_argument("--budget_s", type=float, required=True, help="stop after the epoch that passes this")
    parser.add_argument("--target_accuracy", type=float, default=0.99)
    parser.add_argument("--stop_at_target", action="store_true")
    parser.add_argument("--profile", help="write a torch.profiler table of 30 training steps to this file")
    parser.add_argument("train_py_arguments", nargs=argparse.REMAINDER, help="after --: train.py's arguments")
    args = parser.parse_args()
    train_argv = args.train_py_arguments[1:] if args.train_py_arguments[:1] == ["--"] else args.train_py_arguments

    try:
        model_args, data_args, augmentation, training_args = train.parse_arguments(train_argv)
        clock = EpochClock(data_args, args.target_accuracy, args.budget_s, args.stop_at_target)
        callbacks = [clock] + ([StepProfile(args.profile)] if args.profile else [])
        with mock.patch.object(training, "AugmentingTrainer", trainer_with(*callbacks)):
            results = training.run(model_args, data_args, augmentation, training_args)
    except training.UserError as err:
        sys.exit(f"error: {err}")

    row = {
        "name": args.name, "train_py_arguments": train_argv, "target_accuracy": args.target_accuracy,
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU, {torch.get_num_threads()} threads",
        **clock.summary(), "final_test_accuracy": results.get("test_accuracy"),
    }
    with open(args.results, "a") as file:
        file.write(json.dumps(row) + "\n")
    print(json.dumps({key: value for key, value in row.items() if key != "epochs"}))


if __name__ == "__main__":
    main()
