"""The table of bench/gpu.sh: its results (JSON lines from gpu_train.py and bench_train.py) as markdown.

    python bench/gpu_table.py RESULTS.jsonl > table.md
"""

import json
import sys


def seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.2f} s"


def percent(value: float | None) -> str:
    return "" if value is None else f"{value:.2%}"


def shown_arguments(arguments: list[str]) -> list[str]:
    """train.py's arguments less the folders, which say nothing about the run."""
    hidden = {"--data_dir", "--output_dir"}
    return [arg for i, arg in enumerate(arguments) if arg not in hidden and (i == 0 or arguments[i - 1] not in hidden)]


def training_rows(rows: list[dict]) -> list[str]:
    lines = [
        "| run | train.py arguments | s/epoch, training | s/epoch, with eval and save | first epoch's extra "
        "(compile) | epochs done | best test accuracy | training time to target | final test accuracy |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        reached = seconds(row["s_to_target"]) or f"not reached in {row['trained_s']:.0f} s"
        arguments = " ".join(shown_arguments(row["train_py_arguments"]))
        lines.append(
            f"| {row['name']} | `{arguments}` | {seconds(row['s_per_epoch'])} | {seconds(row['s_per_cycle'])} "
            f"| {seconds(row['first_epoch_extra_s'])} | {row['epochs_done']} | {percent(row['best_test_accuracy'])} "
            f"| {percent(row['target_accuracy'])}: {reached} | {percent(row['final_test_accuracy'])} |"
        )
    return lines


def overhead_rows(rows: list[dict]) -> list[str]:
    lines = ["| train.py vs a hand-written loop | train.py | hand loop | ratio (target <= 1.25) | train.py peak RSS |",
             "| --- | --- | --- | --- | --- |"]
    for row in rows:
        precision = "bf16" if row["bf16"] else "fp32"
        lines.append(
            f"| batch {row['batch_size']}, {precision}, eager, {row['steps']} steps, median of {row['rounds']} "
            f"| {row['train_py_ms_per_step']:.2f} ms/step | {row['hand_loop_ms_per_step']:.2f} ms/step "
            f"| **{row['ratio']:.2f}** | {row['train_py_peak_mib']:.0f} MiB |"
        )
    return lines


def main() -> None:
    with open(sys.argv[1]) as file:
        rows = [json.loads(line) for line in file if line.strip()]
    overhead = [row for row in rows if row["name"] == "trainer_vs_hand_loop"]
    training = [row for row in rows if row["name"] != "trainer_vs_hand_loop"]
    devices = sorted({row["device"] for row in rows})
    print(f"device: {', '.join(devices) or 'no results'}\n")
    print("\n".join(training_rows(training)))
    if overhead:
        print("\n" + "\n".join(overhead_rows(overhead)))


if __name__ == "__main__":
    main()
