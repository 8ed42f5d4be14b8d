"""Transfer learning: MNIST batches made into a stock image-classification model's input, on the training device.

The data stays as MNIST-style 28x28 uint8 digits in memory (prepared by our image processor, white ink on
black) and is augmented as for our model; only then, per batch and on the device, `StockModelInput` does
what the stock model's own image processor would do to that digit: resize (ConvNeXt's `crop_pct` and a
centre crop included), repeat the gray channel, normalise with the model's mean and std. So a fine-tuned
stock model reads MNIST-like digits through its own, unchanged processor.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .data import MNIST_MEAN, MNIST_STD

# ConvNeXt's processors apply `crop_pct` only below this size, as `ConvNextImageProcessor` does.
CONVNEXT_CROP_BELOW = 384
# PIL's resampling filters (the processors' `resample`) as torch's interpolation modes.
INTERPOLATION = {0: "nearest", 2: "bilinear", 3: "bicubic"}


@dataclass
class StockModelInput:
    """The stock processor's resize, channels and normalisation, for a batch of MNIST-normalised digits."""

    resize: tuple[int, int]
    crop: tuple[int, int] | None
    mean: tuple[float, ...]
    std: tuple[float, ...]
    num_channels: int
    mode: str = "bilinear"

    @classmethod
    def from_image_processor(cls, image_processor, num_channels: int) -> "StockModelInput":
        size, crop = image_processor.size, None
        if size.get("height") and size.get("width"):
            resize = (size["height"], size["width"])
        elif size.get("shortest_edge"):  # a square digit: both sides become the shortest edge
            edge = size["shortest_edge"]
            crop_pct = getattr(image_processor, "crop_pct", None)
            if crop_pct is not None and edge < CONVNEXT_CROP_BELOW:
                resize, crop = (int(edge / crop_pct),) * 2, (edge, edge)
            else:
                resize = (edge, edge)
        else:
            raise ValueError(f"{type(image_processor).__name__} gives no image size (size={dict(size)}).")
        if getattr(image_processor, "do_center_crop", False) and crop is None and image_processor.crop_size:
            crop = (image_processor.crop_size["height"], image_processor.crop_size["width"])
        normalize = getattr(image_processor, "do_normalize", True)
        mean = tuple(image_processor.image_mean) if normalize else (0.0,) * num_channels
        std = tuple(image_processor.image_std) if normalize else (1.0,) * num_channels
        mode = INTERPOLATION.get(int(getattr(image_processor, "resample", 2)), "bilinear")
        return cls(resize=resize, crop=crop, mean=mean, std=std, num_channels=num_channels, mode=mode)

    def __call__(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, 1, 28, 28) normalised with MNIST's mean and std -> (B, C, H, W) as the stock model expects."""
        pixels = pixel_values * MNIST_STD + MNIST_MEAN  # back to [0, 1]
        antialias = self.mode != "nearest"  # PIL filters shrinking images; torch only with antialias
        pixels = F.interpolate(pixels, size=self.resize, mode=self.mode, align_corners=False, antialias=antialias)
        pixels = pixels.clamp(0, 1)  # bicubic overshoots; PIL's uint8 result cannot
        if self.crop is not None:
            top, left = (self.resize[0] - self.crop[0]) // 2, (self.resize[1] - self.crop[1]) // 2
            pixels = pixels[:, :, top : top + self.crop[0], left : left + self.crop[1]]
        pixels = pixels.expand(-1, self.num_channels, -1, -1)
        mean = pixels.new_tensor(self.mean).view(1, -1, 1, 1)
        std = pixels.new_tensor(self.std).view(1, -1, 1, 1)
        return (pixels - mean) / std
