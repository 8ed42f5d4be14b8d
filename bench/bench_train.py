"""train.py's time per training step against a minimal hand-written PyTorch loop, in the same run.

Both train the default model on real MNIST batches of the same size and precision, with the same
augmentation, optimizer and schedule. train.py runs as a user runs it (a subprocess); its fixed
start-up cost is removed by timing two run lengths and dividing the difference by the extra steps.
The peak memory (max RSS) of the train.py processes is reported too. Rounds alternate the two so
that a busy machine slows both alike; the medians are compared.

    python bench/bench_train.py --data_dir ../shared/mnist [--batch_size 128] [--bf16] [--rounds 3] [--results R.jsonl]

On a GPU give it enough `--steps` (1000) that their difference outweighs the noise of the runs' start.
"""

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import get_cosine_schedule_with_warmup

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from mnist_vit import MnistViTConfig, MnistViTForImageClassification  # noqa: E402
from mnist_vit.data import Augmentation, normalize, read_idx  # noqa: E402


def hand_written_loop(images: torch.Tensor, labels: torch.Tensor, steps: int, batch_size: int, bf16: bool) -> float:
    """Seconds per step of the plainest loop that does train.py's work: batch, augment, forward, backward, step."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = MnistViTForImageClassification(MnistViTConfig()).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    scheduler = get_cosine_schedule_with_warmup(optimizer, 0, steps)
    augment = Augmentation()
    images, labels = images.to(device), labels.to(device)
    warmup = 5
    for step in range(steps + warmup):
        if step == warmup:
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        index = torch.randint(0, len(images), (batch_size,), device=device)
        pixel_values = augment(normalize(images[index]))
        with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            loss = torch.nn.functional.cross_entropy(model(pixel_values).logits, labels[index], label_smoothing=0.1)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def train_py_runtime(data_dir: str, steps: int, batch_size: int, bf16: bool) -> tuple[float, float]:
    """(train_runtime in seconds, peak RSS in MiB) of `train.py --max_steps steps`, with no evaluation or saving."""
    with tempfile.TemporaryDirectory() as output_dir:
        command = [
            sys.executable, str(REPO_ROOT / "train.py"), "--data_dir", data_dir, "--output_dir", output_dir,
            "--max_steps", str(steps), "--per_device_train_batch_size", str(batch_size), "--eval_strategy", "no",
            "--save_strategy", "no", "--load_best_model_at_end", "false", "--max_eval_samples", "100",
            "--disable_tqdm", "true", "--bf16", str(bf16), "--use_cpu", str(not torch.cuda.is_available()),
        ]
        finished = subprocess.run(command, capture_output=True, text=True)
        if finished.returncode != 0:
            sys.exit(f"train.py failed (exit status {finished.returncode}):\n{finished.stderr[-4000:]}")
        runtime = json.loads((Path(output_dir) / "train_results.json").read_text())["train_runtime"]
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # Linux reports KiB
    return runtime, peak_mib


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", default=str(REPO_ROOT.parent / "shared" / "mnist"))
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=100, help="extra steps between the short and the long run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--results", help="a JSON-lines file to append the figures to")
    args = parser.parse_args()

    images = torch.from_numpy(read_idx(Path(args.data_dir) / "train-images-idx3-ubyte.gz").copy())
    labels = torch.from_numpy(read_idx(Path(args.data_dir) / "train-labels-idx1-ubyte.gz").astype("int64"))
    short_steps = 20
    hand, trainer, peak = [], [], 0.0
    for round_number in range(args.rounds):
        short_runtime, _ = train_py_runtime(args.data_dir, short_steps, args.batch_size, args.bf16)
        long_runtime, peak = train_py_runtime(args.data_dir, short_steps + args.steps, args.batch_size, args.bf16)
        trainer.append((long_runtime - short_runtime) / args.steps)
        hand.append(hand_written_loop(images, labels, args.steps, args.batch_size, args.bf16))
        print(f"round {round_number + 1}: train.py {trainer[-1] * 1000:.1f} ms/step, hand loop {hand[-1] * 1000:.1f} ms/step")

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU, {torch.get_num_threads()} threads"
    ratio = statistics.median(trainer) / statistics.median(hand)
    print(f"device: {device}; batch {args.batch_size}; {'bf16' if args.bf16 else 'fp32'}")
    print(f"train.py:  {statistics.median(trainer) * 1000:.1f} ms/step (median of {args.rounds})")
    print(f"hand loop: {statistics.median(hand) * 1000:.1f} ms/step (median of {args.rounds})")
    print(f"ratio train.py / hand loop: {ratio:.2f} (target: at most 1.25)")
    print(f"peak memory of a train.py process: {peak:.0f} MiB (target: under 2048)")
    if args.results:
        row = {
            "name": "trainer_vs_hand_loop", "device": device, "batch_size": args.batch_size, "bf16": args.bf16,
            "steps": args.steps, "rounds": args.rounds, "train_py_ms_per_step": statistics.median(trainer) * 1000,
            "hand_loop_ms_per_step": statistics.median(hand) * 1000, "ratio": ratio, "train_py_peak_mib": peak,
        }
        with open(args.results, "a") as file:
            file.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
