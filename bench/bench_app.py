"""Response time of the demo: from a stroke drawn in Chromium to the label showing the digit.

    python bench/bench_app.py [--model DIR_OR_REPO] [--strokes 20]

Starts app.py on a free port and draws, with the mouse in headless Chromium, a "1" (one vertical stroke) and a
"0" (one closed loop) in turn, clearing the canvas between them, and times pressing and releasing the mouse and
the label reading the digit (checked every animation frame). The canvas also sends the drawing while the stroke
is under way, so the label may be there already when the mouse is released. Reference in the same run:
the round trip of one drawing through gradio_client (`/predict_drawing`: HTTP, queue, image processor, model).
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the harness that tests/test_app.py uses
from app_harness import (  # noqa: E402
    CANVAS,
    chromium_page,
    clear_canvas,
    closed_loop,
    draw,
    running_app,
    vertical_stroke,
    wait_for_label,
)
from gradio_client import Client  # noqa: E402


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="Model folder or Hub repo (default: app.py's, the shipped one).")
    parser.add_argument("--strokes", type=int, default=20, help="Digits drawn in the browser.")
    return parser.parse_args()


def stroke_timings_ms(page, strokes: int) -> dict[str, np.ndarray]:
    box = page.locator(CANVAS).bounding_box()
    timings = {"drawing the stroke (mouse down -> up)": [], "mouse down -> label": [], "mouse released -> label": []}
    for index in range(strokes):
        points, digit = (vertical_stroke(box), "1") if index % 2 == 0 else (closed_loop(box), "0")
        clear_canvas(page)
        pressed = time.perf_counter()
        draw(page, points)
        released = time.perf_counter()
        wait_for_label(page, digit)
        shown = time.perf_counter()
        for name, duration in zip(timings, (released - pressed, shown - pressed, shown - released)):
            timings[name].append(duration * 1000)
    return {name: np.array(times) for name, times in timings.items()}


def drawing_round_trip_ms(url: str, page, runs: int = 30) -> np.ndarray:
    """The canvas's last drawing, sent again and again through the API."""
    client = Client(url, verbose=False)
    data_url = page.locator(CANVAS).evaluate("canvas => canvas.toDataURL('image/png')")
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        client.predict(data_url, api_name="/predict_drawing")
        times.append(time.perf_counter() - start)
    return np.array(times) * 1000


def report(name: str, times_ms: np.ndarray) -> None:
    p50, p95 = np.percentile(times_ms, [50, 95])
    print(f"{name:<58} p50 {p50:7.0f} ms   p95 {p95:7.0f} ms   ({len(times_ms)} runs)")


def main() -> None:
    arguments = parse_arguments()
    flags = ["--model", arguments.model] if arguments.model else []
    with tempfile.TemporaryDirectory() as folder, running_app(Path(folder) / "app.log", *flags) as url:
        with chromium_page(url) as page:
            strokes = stroke_timings_ms(page, arguments.strokes)
            round_trips = drawing_round_trip_ms(url, page)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (other work shares them)")
    for name, times in strokes.items():
        report(f"browser: {name}", times)
    report("  reference: one drawing through gradio_client", round_trips)


if __name__ == "__main__":
    main()
