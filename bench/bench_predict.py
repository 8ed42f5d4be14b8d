"""Speed of predict.py's model path on this machine: image processor + forward pass, small pictures and photos.

    python bench/bench_predict.py [--model checkpoints/mnist-vit] [--repeats 300]

Small pictures are MNIST test digits as people upload them: black on white, enlarged to 224x224, already
decoded. Photos are 12-megapixel phone photos (mnist_vit.photos): from the JPEG file to `pixel_values` as
predict.py reads them (decoded reduced), and from an already-decoded array. Torch runs on one thread, as in
predict.py and app.py. References measured in the same run: the forward pass alone on ready `pixel_values`
(what the image processor adds), the forward pass under eager attention (what the app's attention maps cost),
and predict.py's path on torch's default number of threads (what the one-thread choice gains or loses).
"""

import argparse
import io
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
from mnist_vit.inference import DigitClassifier, decode_image
from mnist_vit.photos import phone_photo

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
    eager_model = AutoModelForImageClassification.from_pretrained(arguments.model, attn_implementation="eager").eval()
    pictures = upload_like_pictures(BATCH_SIZE)
    photo = phone_photo(read_idx(MNIST_DIR / "train-images-idx3-ubyte.gz")[0], "ruled", np.random.default_rng(0),
                        long_side=(4000, 4000))  # 4000 x 3000
    photo_array = np.asarray(decode_image(io.BytesIO(photo)).convert("RGB").resize((4000, 3000)))
    processor = partial(classifier.image_processor, return_tensors="pt")
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
        (1, "  reference: forward only, eager attention", partial(eager_model, pixel_values=one), 1, repeats),
        (default_threads, default, predict_one, 1, repeats),
        (1, f"{BATCH_SIZE} pictures: preprocess + forward", predict_batch, BATCH_SIZE, batch_runs),
        (1, "  reference: forward only", partial(classifier.model, pixel_values=batch), BATCH_SIZE, batch_runs),
        (default_threads, default, predict_batch, BATCH_SIZE, batch_runs),
        (1, "12-MP photo: JPEG file to pixel_values", lambda: processor(decode_image(io.BytesIO(photo))), 1, 20),
        (1, "12-MP photo: decoded array to pixel_values", partial(processor, photo_array), 1, 20),
    ]
    p50s = []
    for threads, name, run, pictures_per_run, runs in measurements:
        torch.set_num_threads(threads)
        p50s.append(report(name, timings_ms(run, runs), pictures_per_run))
    single, forward, eager, _, batched, batch_forward, _, _, _ = p50s
    print(f"the image processor takes {1 - forward / single:.0%} of one picture's time and "
          f"{1 - batch_forward / batched:.0%} of a batch's; eager attention takes {eager / forward:.2f}x sdpa's time")

if __name__ == "__main__":
    main()
