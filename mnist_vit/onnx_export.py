"""ONNX files for a plain-ViT repo folder, in the layout transformers.js loads, checked against torch.

    stage_onnx(folder, test_images)   # writes folder/onnx/model.onnx and folder/onnx/model_quantized.onnx
    check_onnx(folder, test_images)   # runs both with onnxruntime beside the folder's torch model

`folder` is a repo folder whose root is a plain `ViTForImageClassification` with its `ViTImageProcessor`
(export.py). transformers.js reads `onnx/model_quantized.onnx` by default on the browser's WASM backend and
`onnx/model.onnx` with `dtype: "fp32"`; both take `pixel_values` (B, 3, H, W) and give `logits` (B, classes).
The fp32 file comes from torch's exporter; the 8-bit one from onnxruntime's dynamic quantization (8-bit
weights, activations quantized on the fly), which needs no calibration pictures.

The check feeds both files and the torch model the same pictures through the folder's own processor: the
fp32 logits must lie within `FP32_TOLERANCE` of torch's, and the 8-bit file's top-1 label must agree with
torch's on at least `QUANTIZED_AGREEMENT` of them. A folder that fails is refused with a sentence naming the
largest difference, and `stage_onnx` leaves no onnx/ folder behind.
"""

import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime
import torch
from onnxruntime.quantization import QuantType, quantize_dynamic
from PIL import Image
from transformers import ViTForImageClassification, ViTImageProcessorPil

from .errors import UserError

ONNX_FOLDER = "onnx"
FP32_FILE = "model.onnx"
QUANTIZED_FILE = "model_quantized.onnx"
FP32_TOLERANCE = 1e-4  # on logits
QUANTIZED_AGREEMENT = 0.995  # top-1 labels equal to torch's


@dataclass
class OnnxAgreement:
    digits: int
    fp32_max_difference: float  # the largest |logit| difference from torch
    quantized_agreement: float  # the share of top-1 labels equal to torch's

    def failure(self) -> str | None:
        """What disagrees, as the end of a sentence; None when both files agree with torch."""
        if not self.fp32_max_difference <= FP32_TOLERANCE:  # also catches NaN
            return (
                f"the fp32 ONNX logits differ from torch's by up to {self.fp32_max_difference:.2g} "
                f"on {self.digits} digits (at most {FP32_TOLERANCE:g} allowed)"
            )
        if self.quantized_agreement < QUANTIZED_AGREEMENT:
            return (
                f"the 8-bit ONNX model gives torch's label to only {self.quantized_agreement:.2%} "
                f"of {self.digits} digits (at least {QUANTIZED_AGREEMENT:.1%} needed)"
            )
        return None


class LogitsOnly(torch.nn.Module):
    """The classifier with one tensor out, named as transformers.js expects: `logits`."""

    def __init__(self, vit: ViTForImageClassification):
        super().__init__()
        self.vit = vit

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.vit(pixel_values=pixel_values).logits


def load_root(folder: Path) -> tuple[ViTForImageClassification, ViTImageProcessorPil]:
    return ViTForImageClassification.from_pretrained(folder).eval(), ViTImageProcessorPil.from_pretrained(folder)


def export_fp32(vit: ViTForImageClassification, example: torch.Tensor, path: Path) -> None:
    batch = torch.export.Dim("batch")
    torch.onnx.export(
        LogitsOnly(vit).eval(), (example,), path, dynamo=True, external_data=False, verbose=False,
        input_names=["pixel_values"], output_names=["logits"], dynamic_shapes={"pixel_values": {0: batch}},
    )


def stage_onnx(folder: str | Path, test_images: Sequence[Image.Image]) -> OnnxAgreement:
    """Write `folder/onnx/` from the plain ViT at `folder`'s root and check it on `test_images` (MNIST test digits).

    Refuses, with nothing left in `folder/onnx/`, when either file disagrees with torch.
    """
    folder = Path(folder)
    onnx_folder = folder / ONNX_FOLDER
    if onnx_folder.exists():
        raise UserError(f"{onnx_folder} exists already; stage the ONNX files into a folder without one.")
    vit, processor = load_root(folder)
    example = processor(list(test_images[:2]), return_tensors="pt")["pixel_values"]
    # Written elsewhere first: a folder with onnx/ in it is one whose files passed the check.
    with tempfile.TemporaryDirectory() as scratch:
        staged = Path(scratch) / ONNX_FOLDER
        staged.mkdir()
        export_fp32(vit, example, staged / FP32_FILE)
        quantize_dynamic(staged / FP32_FILE, staged / QUANTIZED_FILE, weight_type=QuantType.QInt8)
        agreement = measure(vit, processor, staged, test_images)
        failure = agreement.failure()
        if failure:
            raise UserError(f"The ONNX export of {folder} disagrees with torch, so it was not written: {failure}.")
        shutil.copytree(staged, onnx_folder)
    return agreement


def check_onnx(folder: str | Path, test_images: Sequence[Image.Image]) -> OnnxAgreement:
    """Run `folder/onnx/`'s two files and `folder`'s torch model on `test_images`; refuse if they disagree."""
    folder = Path(folder)
    missing = [name for name in (FP32_FILE, QUANTIZED_FILE) if not (folder / ONNX_FOLDER / name).is_file()]
    if missing:
        raise UserError(f"{folder / ONNX_FOLDER} lacks {', '.join(missing)}: stage it with stage_onnx first.")
    agreement = measure(*load_root(folder), folder / ONNX_FOLDER, test_images)
    failure = agreement.failure()
    if failure:
        raise UserError(f"The ONNX files in {folder} disagree with its torch model: {failure}.")
    return agreement


def measure(
    vit: ViTForImageClassification, processor: ViTImageProcessorPil, onnx_folder: Path, images: Sequence[Image.Image]
) -> OnnxAgreement:
    pixel_values = processor(list(images), return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        expected = vit(pixel_values=pixel_values).logits.numpy()
    fp32, quantized = (onnx_logits(onnx_folder / name, pixel_values.numpy()) for name in (FP32_FILE, QUANTIZED_FILE))
    return OnnxAgreement(
        digits=len(expected),
        fp32_max_difference=float(np.abs(fp32 - expected).max()),
        quantized_agreement=float((quantized.argmax(-1) == expected.argmax(-1)).mean()),
    )


def onnx_logits(path: Path, pixel_values: np.ndarray) -> np.ndarray:
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"pixel_values": pixel_values})[0]


__all__ = ["OnnxAgreement", "check_onnx", "stage_onnx"]
