"""Speed of predict.py's model path on this machine: image processor + forward pass, one picture and batches.

    python bench/bench_predict.py [--model checkpoints/mnist-vit] [--repeats 300]

The pictures are MNIST test digits as people upload them: black on white, enlarged to 224x224. Decoding files
is left out (it depends on the format, not on us). Torch runs on one thread, as in predict.py and app.py.
References measured in the same run: the forward pass alone on ready `pixel_values` (what the image processor
adds), the forward pass under `sdpa` (what eager attention, needed for the app's attention maps, costs), and
predict.py's path on torch's default number of threads (what the one-thread choice gains or loses).
"""

import argparse
import os
import platform
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import AutoModelForImageClassification
from transformers.utils import logging

from mnist_vit.data import read_idx
from mnist_vit.inference import DigitClassifier

REPO_ROOT = Path(__file__).resolve().parents[1]
MNIST_DIR = Path(os.environ.get("MNIST_DIR", REPO_ROOT.parent / "shared" / "mnist"))
BATCH_SIZE = 64  # predict.py's batch


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(REPO_ROOT / "checkpoints" / "mnist-vit"))
    parser.add_argument("--repeats", type=int, default=300, help="Timed runs of each single-picture measurement.")
    return parser.parse_args()


def upload_like_pictures(count: int) -> list[Image.Image]:
    digits = read_idx(MNIST_DIR / "t10k-images-idx3-ubyte.gz")[:count]
    return [Image.fromarray(255 - digit).resize((224, 224), Image.Resampling.BICUBIC) for digit in digits]


def timings_ms(run, repeats: int, warmup: int = 10) -> np.ndarray:
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return np.array(times) * 1000


def report(name: str, times_ms: np.ndarray, pictures: int = 1) -> float:
    p50, p95 = np.percentile(times_ms, [50, 95])
    print(f"{name:<52} p50 {p50:8.2f} ms   p95 {p95:8.2f} ms   {pictures * 1000 / p50:8.0f} pictures/s")
    return p50


def main() -> None:
    arguments = parse_arguments()
    logging.disable_progress_bar()
    torch.set_grad_enabled(False)
    default_threads = torch.get_num_threads()
    classifier = DigitClassifier.from_pretrained(arguments.model)
    sdpa_model = AutoModelForImageClassification.from_pretrained(arguments.model, attn_implementation="sdpa").eval()
    pictures = upload_like_pictures(BATCH_SIZE)
    one, batch = classifier.preprocess(pictures[:1]), classifier.preprocess(pictures)
    repeats, batch_runs = arguments.repeats, max(arguments.repeats // 10, 5)
    print(f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, load average "
          f"{os.getloadavg()[0]:.1f} (other work shares these CPUs)")
    print(f"{arguments.model}: one picture {repeats} runs, batches of {BATCH_SIZE} {batch_runs} runs")

    predict_one, predict_batch = partial(classifier.predict, pictures[:1]), partial(classifier.predict, pictures)
    default = f"  reference: on {default_threads} threads"
    measurements = [  # torch threads, name, what to run, pictures per run, runs
        (1, "one picture: preprocess + forward (predict.py)", predict_one, 1, repeats),
        (1, "  reference: forward only", partial(classifier.model, pixel_values=one), 1, repeats),
        (1, "  reference: forward only, sdpa attention", partial(sdpa_model, pixel_values=one), 1, repeats),
        (default_threads, default, predict_one, 1, repeats),
        (1, f"{BATCH_SIZE} pictures: preprocess + forward", predict_batch, BATCH_SIZE, batch_runs),
        (1, "  reference: forward only", partial(classifier.model, pixel_values=batch), BATCH_SIZE, batch_runs),
        (default_threads, default, predict_batch, BATCH_SIZE, batch_runs),
    ]
    p50s = []
    for threads, name, run, pictures_per_run, runs in measurements:
        torch.set_num_threads(threads)
        p50s.append(report(name, timings_ms(run, runs), pictures_per_run))
    single, forward, sdpa, _, batched, batch_forward, _ = p50s
    print(f"the image processor takes {1 - forward / single:.0%} of one picture's time and "
          f"{1 - batch_forward / batched:.0%} of a batch's; eager attention takes {forward / sdpa:.2f}x sdpa's time")

if __name__ == "__main__":
    main()
