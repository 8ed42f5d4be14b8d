"""MNIST batches made to look like uploads after the stock `ViTImageProcessor`: the augmentation of the root model.

The stock processor resizes the whole picture to 28x28 and normalises; it does not find, crop, centre or invert
the digit. So a drawing, a typed digit or a phone photo reaches the model as a small or large digit anywhere in
the frame, dark on light paper or light on dark, squashed by the picture's aspect ratio, on tinted or dim paper
under uneven light (a hard-edged shadow band, a glare spot), in faint pencil or black ink, maybe with ruled lines,
the desk at one border or all around a sticky note, blurred and noisy. `as_uploads` makes that of a
batch of MNIST digits (brightness in [0, 1], white on black), per image and in one pass on the batch's device:

    brightness = as_uploads(brightness, generator=generator)  # (B, 1, 28, 28) in, same shape out

A share `MNIST_SHARE` of the batch stays as it came, so the model keeps reading MNIST itself, and a share
`CLEAN_SHARE` of the dark-ink pictures is a clean drawing or typed digit: black ink on white paper, with none of a
photo's light, lines, desk or noise (a drawing app's canvas, a screenshot). The digit is drawn
at twice the resolution and averaged down, as the processor's filter averages a large picture. JPEG artefacts
are not imitated: blur and noise stand in for them.
"""

import math

import torch
import torch.nn.functional as F

MNIST_SHARE = 0.2  # pictures left as MNIST digits
DARK_INK_SHARE = 0.6  # of the others: dark ink on light paper (the rest: light on dark)
CLEAN_SHARE = 0.3  # of the dark-ink pictures: a clean canvas (paper 0.9-1, ink 0-0.2), no light, lines or noise
MNIST_DIGIT_LENGTH = 20 / 28  # an MNIST digit's longer side, as a share of its frame
DIGIT_LENGTH = (0.2, 1.0)  # the digit's longer side in an upload, as a share of the frame's
ASPECT = math.log(1.4)  # pictures of 3:4 or 4:3 squashed to square: the digit stretched by up to 1.4 either way
PAPER = (0.25, 1.0)  # dark-ink paper's brightness: a dim photo to white paper
INK_CONTRAST = (0.3, 1.0)  # how much darker than the paper dark ink is, as a share of it: faint pencil to black ink
MIN_DARKENING = 0.15  # ... and at least this much (of the full range), so that faint ink on dim paper stays visible
# of the dark-ink pictures: ruled or squared paper; the desk beyond the paper's edge; a sticky note on the desk
LINES_SHARE, EDGE_SHARE, NOTE_SHARE = 0.35, 0.15, 0.1
SHADOW_BAND_SHARE, GLARE_SHARE = 0.2, 0.15  # of all pictures: the phone's hard-edged shadow; a glare spot
OVERSAMPLING = 2
BLUR_SIGMA = 1.0  # pixels of the 28x28 frame
NOISE_STD = 0.05  # of the full brightness range


def as_uploads(brightness: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """MNIST digits (B, 1, H, W), brightness in [0, 1] -> the same digits as the stock processor gives uploads of them."""
    batch, _, height, width = brightness.shape
    draw = Draws(batch, brightness.device, generator)
    ink = brightness.clamp(0, 1)
    moved, digit_box = placed(ink, draw, OVERSAMPLING)
    coverage = F.avg_pool2d(moved, OVERSAMPLING)  # (B, 1, H, W) in [0, 1]
    coverage = coverage * draw.uniform(0.5, 1.0)  # a thin trace to a felt pen's

    dark_ink = draw.chance(DARK_INK_SHARE)
    clean = dark_ink & draw.chance(CLEAN_SHARE)
    photo = ~clean
    paper = torch.where(dark_ink, draw.uniform(*PAPER), draw.uniform(0.0, 0.35))
    paper = torch.where(clean, draw.uniform(0.9, 1.0), paper)
    darkening = torch.clamp(paper * draw.uniform(*INK_CONTRAST), min=MIN_DARKENING)
    ink_level = torch.where(dark_ink, (paper - darkening).clamp(min=0), draw.uniform(0.6, 1.0))
    ink_level = torch.where(clean, draw.uniform(0.0, 0.2), ink_level)
    paper = paper * ruling(draw, height, width, dark_ink & photo & draw.chance(LINES_SHARE))
    picture = paper + (ink_level - paper) * coverage
    picture = torch.where(clean, picture, picture * light(draw, height, width))
    picture = glare(picture, draw, photo & draw.chance(GLARE_SHARE))
    picture = beyond_edge(picture, draw, dark_ink & photo & draw.chance(EDGE_SHARE))
    picture = on_sticky_note(picture, draw, digit_box, dark_ink & photo & draw.chance(NOTE_SHARE))
    picture = blurred(picture, draw.uniform(0.0, BLUR_SIGMA))
    picture = picture + draw.normal(picture.shape) * draw.uniform(0.0, NOISE_STD) * photo
    return torch.where(draw.chance(MNIST_SHARE), brightness, picture.clamp(0, 1).to(brightness.dtype))


class Draws:
    """Random numbers for a batch, one per image ((B, 1, 1, 1), to broadcast over pictures), from `generator`."""

    def __init__(self, batch: int, device: torch.device, generator: torch.Generator | None):
        self.batch, self.device, self.generator = batch, device, generator
        self.source_device = generator.device if generator is not None else device

    def uniform(self, low: float, high: float) -> torch.Tensor:
        values = torch.rand(self.batch, 1, 1, 1, generator=self.generator, device=self.source_device)
        return low + (high - low) * values.to(self.device)

    def chance(self, probability: float) -> torch.Tensor:
        return self.uniform(0.0, 1.0) < probability

    def normal(self, shape: torch.Size) -> torch.Tensor:
        return torch.randn(shape, generator=self.generator, device=self.source_device).to(self.device)


def placed(ink: torch.Tensor, draw: Draws, oversampling: int) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """The digits (B, 1, H, W) moved into frames `oversampling` times larger: the longer side `DIGIT_LENGTH` of
    the frame's, stretched by the picture's aspect ratio, anywhere in it, with strokes thicker or thinner; and
    where each went, (centre x, centre y, half width, half height) in frame coordinates (-1 to 1), each (B,)."""
    batch, _, height, width = ink.shape
    length = draw.uniform(*DIGIT_LENGTH).view(batch)
    stretch = torch.exp(draw.uniform(-ASPECT, ASPECT).view(batch))
    zoom_x = length / MNIST_DIGIT_LENGTH * torch.sqrt(stretch)
    zoom_y = length / MNIST_DIGIT_LENGTH / torch.sqrt(stretch)
    # Frame coordinates run from -1 to 1: the digit's half length is about `length * zoom / zoom`, so a centre
    # in [-(1 - half), 1 - half] keeps it inside.
    room_x = (1 - length * torch.sqrt(stretch)).clamp(min=0)
    room_y = (1 - length / torch.sqrt(stretch)).clamp(min=0)
    centre_x = draw.uniform(-1.0, 1.0).view(batch) * room_x
    centre_y = draw.uniform(-1.0, 1.0).view(batch) * room_y
    zero = torch.zeros_like(length)
    # affine_grid maps each output point to where it reads the input: (output - centre) / zoom.
    theta = torch.stack(
        [1 / zoom_x, zero, -centre_x / zoom_x, zero, 1 / zoom_y, -centre_y / zoom_y], dim=1
    ).view(batch, 2, 3).to(ink.dtype)
    grid = F.affine_grid(theta, [batch, 1, height * oversampling, width * oversampling], align_corners=False)
    moved = F.grid_sample(ink, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    weighted = stroke_weight(moved, draw.uniform(-1.0, 1.0), zoom=torch.minimum(zoom_x, zoom_y).view(batch, 1, 1, 1))
    return weighted, (centre_x, centre_y, length * torch.sqrt(stretch), length / torch.sqrt(stretch))


def stroke_weight(ink: torch.Tensor, weight: torch.Tensor, zoom: torch.Tensor) -> torch.Tensor:
    """Strokes up to a pixel thicker (weight > 0) or thinner (weight < 0; only for digits not shrunk, whose
    strokes would vanish), by a 3x3 maximum or minimum."""
    thicker = F.max_pool2d(ink, 3, stride=1, padding=1)
    thinner = -F.max_pool2d(-ink, 3, stride=1, padding=1)
    thinning = (-weight).clamp(min=0) * (zoom > 0.9)
    return ink + weight.clamp(min=0) * (thicker - ink) + thinning * (thinner - ink)


def grid_coordinates(height: int, width: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(1, 1, H, W) row and column coordinates in [-1, 1]."""
    ys = torch.linspace(-1, 1, height, device=device).view(1, 1, height, 1).expand(1, 1, height, width)
    xs = torch.linspace(-1, 1, width, device=device).view(1, 1, 1, width).expand(1, 1, height, width)
    return ys, xs


def ruling(draw: Draws, height: int, width: int, ruled: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) paper brightness factors: thin lines 10-40% of the frame apart, a few degrees off level;
    half the ruled sheets squared. 1 where `ruled` is False."""
    ys, xs = grid_coordinates(height, width, draw.device)
    tilt = torch.deg2rad(draw.uniform(-5.0, 5.0))
    spacing, thickness = draw.uniform(0.2, 0.8), draw.uniform(0.5, 1.2) * 2 / height  # in frame units
    across = ys * torch.cos(tilt) - xs * torch.sin(tilt) + draw.uniform(0.0, 1.0) * spacing
    along = xs * torch.cos(tilt) + ys * torch.sin(tilt) + draw.uniform(0.0, 1.0) * spacing
    lines = line_coverage(across, spacing, thickness)
    lines = torch.where(draw.chance(0.5), torch.maximum(lines, line_coverage(along, spacing, thickness)), lines)
    return 1 - draw.uniform(0.1, 0.5) * lines * ruled


def line_coverage(position: torch.Tensor, spacing: torch.Tensor, thickness: torch.Tensor) -> torch.Tensor:
    """1 on lines `thickness` wide every `spacing`, fading out over a pixel (2 / H frame units) at their edges."""
    distance = torch.abs(torch.remainder(position + spacing / 2, spacing) - spacing / 2)
    pixel = 2 / position.shape[-2]
    return ((thickness / 2 + pixel / 2 - distance) / pixel).clamp(0, 1)


def light(draw: Draws, height: int, width: int) -> torch.Tensor:
    """(B, 1, H, W) brightness factors: a light gradient in a random direction, down to 50% at the dark side,
    and for a share `SHADOW_BAND_SHARE` the phone's shadow across the frame: a band 15-50% of it wide, hard-edged,
    35-55% darker."""
    ys, xs = grid_coordinates(height, width, draw.device)
    direction = draw.uniform(0.0, 2 * math.pi)
    ramp = (xs * torch.cos(direction) + ys * torch.sin(direction)) / 2  # about -0.7..0.7
    gradient = 1 - draw.uniform(0.0, 0.5) * (ramp + 0.7) / 1.4
    angle = draw.uniform(0.0, math.pi)
    across = xs * torch.cos(angle) + ys * torch.sin(angle)  # frame units along the band's normal
    start, band_width, pixel = draw.uniform(-1.0, 0.6), draw.uniform(0.3, 1.0), 2 / height
    band = ((across - start) / pixel).clamp(0, 1) * ((start + band_width - across) / pixel).clamp(0, 1)
    return gradient * (1 - draw.uniform(0.35, 0.55) * band * draw.chance(SHADOW_BAND_SHARE))


def glare(picture: torch.Tensor, draw: Draws, shown: torch.Tensor) -> torch.Tensor:
    """Where `shown`: a glare spot (a Gaussian 5-12% of the frame wide) anywhere, washing out 60-90% towards white."""
    ys, xs = grid_coordinates(*picture.shape[-2:], draw.device)
    distance2 = (xs - draw.uniform(-1.0, 1.0)) ** 2 + (ys - draw.uniform(-1.0, 1.0)) ** 2
    spot = torch.exp(-distance2 / (2 * (2 * draw.uniform(0.05, 0.12)) ** 2))
    return picture + (1 - picture) * spot * draw.uniform(0.6, 0.9) * shown


def on_sticky_note(picture: torch.Tensor, draw: Draws, digit_box: tuple[torch.Tensor, ...], shown: torch.Tensor) -> torch.Tensor:
    """Where `shown`: the paper is a square note around the digit (a margin of 20-45% of its size, turned up to 10
    degrees) and the desk (dark, 0.05-0.45) is everywhere else."""
    ys, xs = grid_coordinates(*picture.shape[-2:], draw.device)
    centre_x, centre_y, half_width, half_height = (value.view(-1, 1, 1, 1) for value in digit_box)
    half = torch.maximum(half_width, half_height) * (1 + draw.uniform(0.2, 0.45))
    angle = torch.deg2rad(draw.uniform(-10.0, 10.0))
    u = (xs - centre_x) * torch.cos(angle) + (ys - centre_y) * torch.sin(angle)
    v = (ys - centre_y) * torch.cos(angle) - (xs - centre_x) * torch.sin(angle)
    on_note = ((half - torch.maximum(u.abs(), v.abs())) * picture.shape[-2] / 2 + 0.5).clamp(0, 1)
    off_note = (1 - on_note) * shown
    return picture * (1 - off_note) + draw.uniform(0.05, 0.45) * off_note


def beyond_edge(picture: torch.Tensor, draw: Draws, shown: torch.Tensor) -> torch.Tensor:
    """Where `shown`: the desk (dark, 0.05-0.45) beyond the paper's edge, a straight line 3-15% in from one border."""
    height, width = picture.shape[-2:]
    ys, xs = grid_coordinates(height, width, draw.device)
    angle = draw.uniform(0.0, 2 * math.pi)  # the border the desk is at: the one this direction points to
    towards = xs * torch.cos(angle) + ys * torch.sin(angle)
    reach = torch.maximum(torch.cos(angle).abs(), torch.sin(angle).abs())  # how far `towards` goes at that border
    depth = draw.uniform(0.06, 0.3)  # frame units: 3-15% of the side
    off_paper = ((towards - (reach - depth)) * height / 2 + 0.5).clamp(0, 1) * shown
    return picture * (1 - off_paper) + draw.uniform(0.05, 0.45) * off_paper


def blurred(picture: torch.Tensor, sigma: torch.Tensor, radius: int = 2) -> torch.Tensor:
    """Each picture of (B, 1, H, W) blurred by its own Gaussian `sigma` (B, 1, 1, 1) pixels, edges replicated."""
    batch, _, height, width = picture.shape
    offsets = torch.arange(-radius, radius + 1, device=picture.device, dtype=picture.dtype)
    kernel = torch.exp(-(offsets**2) / (2 * sigma.view(batch, 1).clamp(min=1e-3) ** 2))
    kernel = (kernel / kernel.sum(dim=1, keepdim=True)).to(picture.dtype)  # (B, 2r + 1)
    padded = F.pad(picture.view(1, batch, height, width), (radius,) * 4, mode="replicate")
    rows = F.conv2d(padded, kernel.view(batch, 1, 1, -1), groups=batch)
    both = F.conv2d(rows, kernel.view(batch, 1, -1, 1), groups=batch)
    return both.view(batch, 1, height, width)
