"""Training data: MNIST from LeCun's IDX files or any Hub / image-folder dataset, as one schema.

Every source ends up as a `DatasetDict` with the schema of the Hub's `ylecun/mnist`
(`image: Image()`, `label: ClassLabel`), so the rest of the code cannot tell them apart.
For training, `to_pixel_arrays` turns the images once into uint8 arrays through the image processor
(decoding on every epoch would cost seconds), `InMemorySplit` holds a split as tensors, `collate_batch`
normalises a batch and `random_affine` augments it on whatever device it lives (`Augmentation` adds
`upload_augmentation.as_uploads` for the root model).

    dataset = load_image_dataset(data_dir="../shared/mnist")
    dataset = limit_samples(split_train_validation(dataset), max_train_samples=1000)
    dataset = to_pixel_arrays(dataset, MnistViTImageProcessor())
    train = InMemorySplit(dataset["train"])
    batch = collate_batch(train.__getitems__(range(128)))
"""

import gzip
import hashlib
import io
import math
import os
import shutil
import struct
import uuid
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .errors import UserError
from .inference import IMAGE_SUFFIXES
from .upload_augmentation import as_uploads

MNIST_MEAN = 0.1307
MNIST_STD = 0.3081
# A black pixel after normalisation: what the area outside a digit looks like to the model.
MNIST_BACKGROUND = (0.0 - MNIST_MEAN) / MNIST_STD

MNIST_HUB_NAME = "ylecun/mnist"
MNIST_FEATURES = datasets.Features(
    {"image": datasets.Image(), "label": datasets.ClassLabel(names=[str(digit) for digit in range(10)])}
)
# The four files of LeCun's MNIST page, by split: (images, labels).
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
EXPECTED_IDX_FILES = ", ".join(f"{name}[.gz]" for pair in IDX_FILES.values() for name in pair)
IDX_CACHE_FOLDER = "mnist_vit_idx"
# Part of the cache key: bump it when the conversion changes, so old caches are not reused.
IDX_CACHE_VERSION = "1"
GZIP_MAGIC = b"\x1f\x8b"
IDX_UINT8 = 0x08


# ---------------------------------------------------------------------------------------------
# LeCun's IDX files


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file of uint8 data, gzip-compressed or not, as a read-only array of its shape.

    The layout: two zero bytes, the type byte 0x08 (uint8), the number of dimensions, one
    big-endian uint32 per dimension, then the data. Gzip is recognised by its magic bytes, not
    by the file name.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(
            f"IDX file {path} does not exist. An MNIST data folder holds {EXPECTED_IDX_FILES}."
        ) from None
    if raw[:2] == GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:
            raise ValueError(f"{path} is a damaged gzip file ({err}); download it again.") from err
    shape, header_size = _parse_idx_header(raw, path)
    expected, found = math.prod(shape), len(raw) - header_size
    if found != expected:
        problem = "is truncated" if found < expected else "is longer than its header says"
        dims = "x".join(map(str, shape))
        raise ValueError(f"{path} {problem}: header says {dims} = {expected} bytes, found {found}.")
    return np.frombuffer(raw, dtype=np.uint8, offset=header_size).reshape(shape)


def _parse_idx_header(raw: bytes, path: Path) -> tuple[tuple[int, ...], int]:
    """The shape an IDX header announces, and the header's size in bytes."""
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] != IDX_UINT8 or raw[3] == 0:
        raise ValueError(
            f"{path} is not a uint8 IDX file: it starts with {raw[:4].hex(' ')!r}, "
            "expected '00 00 08 <number of dimensions>'."
        )
    ndim = raw[3]
    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise ValueError(f"{path} is truncated: its header announces {ndim} dimensions but ends early.")
    return struct.unpack(f">{ndim}I", raw[4:header_size]), header_size


def _spellings(name: str) -> list[str]:
    """The names an IDX file goes by: `train-images-idx3-ubyte` or `train-images.idx3-ubyte`, gzipped or not."""
    dotted = name.replace("-idx", ".idx")
    return [name, f"{name}.gz", dotted, f"{dotted}.gz"]


def _find_idx_file(data_dir: Path, name: str) -> Path | None:
    return next((data_dir / spelling for spelling in _spellings(name) if (data_dir / spelling).is_file()), None)


def find_idx_files(data_dir: str | os.PathLike) -> dict[str, tuple[Path, Path]]:
    """The (images, labels) IDX files of each split in `data_dir`; all four must be there."""
    data_dir = Path(data_dir)
    found = {name: _find_idx_file(data_dir, name) for pair in IDX_FILES.values() for name in pair}
    missing = [f"{name}[.gz]" for name, path in found.items() if path is None]
    if missing:
        raise FileNotFoundError(
            f"{data_dir} is missing {', '.join(missing)}; an MNIST data folder holds {EXPECTED_IDX_FILES}."
        )
    return {split: (found[images], found[labels]) for split, (images, labels) in IDX_FILES.items()}


def _read_split(images_path: Path, labels_path: Path) -> datasets.Dataset:
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or labels.ndim != 1:
        raise ValueError(
            f"{images_path} and {labels_path} hold arrays of shape {images.shape} and {labels.shape}; "
            "expected images (N, rows, columns) and labels (N,)."
        )
    if len(images) != len(labels):
        raise ValueError(
            f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels; "
            "the two files must come from the same split."
        )
    # PNG bytes, as the Hub's copy stores them; `Image()` decodes them on access.
    encoded = [{"bytes": _png_bytes(image), "path": None} for image in images]
    return datasets.Dataset.from_dict({"image": encoded, "label": labels.tolist()}, features=MNIST_FEATURES)


def _png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def idx_to_dataset_dict(files: dict[str, tuple[Path, Path]]) -> datasets.DatasetDict:
    """Convert the IDX files of each split (see `find_idx_files`) to the schema of `ylecun/mnist`."""
    return datasets.DatasetDict({split: _read_split(*pair) for split, pair in files.items()})


def _cache_key(files: dict[str, tuple[Path, Path]]) -> str:
    """Names, sizes and modification times of the files: a new or changed file gets a new cache."""
    digest = hashlib.sha256(IDX_CACHE_VERSION.encode())
    for path in sorted(path for pair in files.values() for path in pair):
        stat = path.stat()
        digest.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    return digest.hexdigest()[:16]


def load_idx_dataset(data_dir: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> datasets.DatasetDict:
    """MNIST from the four IDX files in `data_dir`, with the splits and schema of the Hub's `ylecun/mnist`.

    The conversion runs once: its result is saved under `<cache_dir>/mnist_vit_idx/<key>`
    (`cache_dir` defaults to `HF_DATASETS_CACHE`), keyed by the files' names, sizes and
    modification times, and later calls memory-map it with `load_from_disk`.
    """
    files = find_idx_files(data_dir)
    cache_root = Path(cache_dir or datasets.config.HF_DATASETS_CACHE) / IDX_CACHE_FOLDER
    cached = cache_root / _cache_key(files)
    if not cached.is_dir():
        _save_atomically(idx_to_dataset_dict(files), cached)
    return datasets.load_from_disk(str(cached))


def _save_atomically(dataset: datasets.DatasetDict, target: Path) -> None:
    """Save to a temporary folder beside `target`, then rename it: an interrupted save leaves no cache."""
    # A unique hidden name, made with the usual permissions (tempfile.mkdtemp would make it private).
    staging = target.with_name(f".{target.name}-{uuid.uuid4().hex}")
    staging.mkdir(parents=True)
    try:
        dataset.save_to_disk(str(staging))
        staging.rename(target)
    except OSError:
        # Another process may have finished the same conversion first; its cache is as good as ours.
        if not target.is_dir():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Any source, one schema


def load_image_dataset(
    dataset_name: str | None = None,
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    dataset_config_name: str | None = None,
    image_column_name: str | None = None,
    label_column_name: str | None = None,
    token: str | None = None,
) -> datasets.DatasetDict:
    """An image-classification dataset with a `train` split, a `test` or `validation` split (or both) and
    columns `image` and `label`.

    `data_dir` holding MNIST IDX files is read with `load_idx_dataset`; a `data_dir` of images in
    class folders (optionally under `train/` and `test/`) with the `imagefolder` loader. Without
    `data_dir`, `dataset_name` is loaded from the Hub (default: `ylecun/mnist`). The source's
    image column (an `Image` feature) and label column (a `ClassLabel`) are renamed to `image`
    and `label`, and other columns dropped, so Fashion-MNIST, KMNIST or CIFAR-10 work the same.
    `image_column_name` / `label_column_name` pick other columns than the first of each type.
    `cache_dir` replaces `HF_DATASETS_CACHE` for the download or conversion; `dataset_config_name` and
    `token` go to `datasets.load_dataset`.
    """
    if data_dir is not None:
        source = str(data_dir)
        dataset = _load_local(Path(data_dir), cache_dir)
    else:
        source = dataset_name or MNIST_HUB_NAME
        dataset = _load_from_hub(source, cache_dir, dataset_config_name, token)
    _check_splits(dataset, source)
    return select_image_and_label(dataset, source, image_column_name, label_column_name)


def open_dataset(dataset_name: str | None, data_dir: str | os.PathLike | None, **options) -> datasets.DatasetDict:
    """`load_image_dataset`, its errors (no network, a bad data folder) as one sentence for the command line."""
    try:
        return load_image_dataset(dataset_name, data_dir, **options)
    except (FileNotFoundError, ValueError, RuntimeError) as err:
        raise UserError(str(err)) from err


def load_image_folders(
    train_dir: str | os.PathLike, validation_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> datasets.DatasetDict:
    """Images in one folder per class: `train` from `train_dir`, `validation` from `validation_dir` if given,
    as transformers' `run_image_classification.py` reads its `--train_dir` and `--validation_dir`."""
    folders = {"train": Path(train_dir), "validation": Path(validation_dir) if validation_dir else None}
    data_files = {}
    for split, folder in folders.items():
        if folder is None:
            continue
        if not folder.is_dir():
            raise FileNotFoundError(f"The {split} image folder {folder} does not exist.")
        data_files[split] = str(folder / "**")
    dataset = datasets.load_dataset("imagefolder", data_files=data_files, cache_dir=cache_dir)
    return select_image_and_label(dataset, str(train_dir))


def _load_local(data_dir: Path, cache_dir: str | os.PathLike | None) -> datasets.DatasetDict:
    if not data_dir.is_dir():
        raise FileNotFoundError(f"Data folder {data_dir} does not exist.")
    names = [name for pair in IDX_FILES.values() for name in pair]
    if any(_find_idx_file(data_dir, name) for name in names):
        return load_idx_dataset(data_dir, cache_dir)
    if any(path.suffix.lower() in IMAGE_SUFFIXES for path in data_dir.rglob("*")):
        return datasets.load_dataset("imagefolder", data_dir=str(data_dir), cache_dir=cache_dir)
    raise ValueError(
        f"{data_dir} holds neither MNIST IDX files ({EXPECTED_IDX_FILES}) nor an image folder "
        "(images in one folder per class, under train/ and test/)."
    )


def _load_from_hub(
    dataset_name: str, cache_dir: str | os.PathLike | None, config_name: str | None, token: str | None
) -> datasets.DatasetDict:
    try:
        return datasets.load_dataset(dataset_name, config_name, cache_dir=cache_dir, token=token)
    except ConnectionError as err:
        raise RuntimeError(
            f"Could not download {dataset_name!r} from the Hugging Face Hub (no network?). "
            "Pass --data_dir with the four MNIST IDX files instead."
        ) from err


def _check_splits(dataset: datasets.DatasetDict, source: str) -> None:
    missing = [split for split in ("train", "test") if split not in dataset]
    if "validation" in dataset and missing == ["test"]:
        return  # the report is then on validation
    if missing:
        raise ValueError(
            f"{source} has no {' or '.join(map(repr, missing))} split (it has {', '.join(dataset)}); "
            "training needs 'train' and a held-out 'test' or 'validation' split (for an image folder: train/ and "
            "test/ or validation/ subfolders)."
        )


def select_image_and_label(
    dataset: datasets.DatasetDict, source: str, image_column: str | None = None, label_column: str | None = None
) -> datasets.DatasetDict:
    """Keep `image_column` (default: the first `Image` column) as `image` and `label_column` (default: the first
    `ClassLabel` column) as `label`."""
    features = dataset["train"].features
    for name, kind in ((image_column, datasets.Image), (label_column, datasets.ClassLabel)):
        if name is not None and not isinstance(features.get(name), kind):
            raise ValueError(
                f"{source} has no {kind.__name__} column {name!r}; its features are {dict(features)}."
            )
    image_column = image_column or next((name for name, kind in features.items() if isinstance(kind, datasets.Image)), None)
    label_column = label_column or next((name for name, kind in features.items() if isinstance(kind, datasets.ClassLabel)), None)
    if image_column is None or label_column is None:
        lacking = "image column (datasets.Image)" if image_column is None else "label column (datasets.ClassLabel)"
        raise ValueError(f"{source} has no {lacking}; its features are {dict(features)}.")
    dataset = dataset.select_columns([image_column, label_column])
    renames = {old: new for old, new in ((image_column, "image"), (label_column, "label")) if old != new}
    return dataset.rename_columns(renames) if renames else dataset


def split_train_validation(
    dataset: datasets.DatasetDict, validation_size: int | float = 5000, seed: int = 42
) -> datasets.DatasetDict:
    """Splits `train`, `validation` and `test` (if the source has one): a seeded random `validation_size`
    examples are held out of `train` (a float is a fraction), unless the source already has a `validation` split."""
    if "validation" in dataset:
        return datasets.DatasetDict({split: dataset[split] for split in ("train", "validation", "test") if split in dataset})
    held_out = dataset["train"].train_test_split(test_size=validation_size, seed=seed)
    splits = {"train": held_out["train"], "validation": held_out["test"]}
    return datasets.DatasetDict({**splits, **({"test": dataset["test"]} if "test" in dataset else {})})


def limit_samples(
    dataset: datasets.DatasetDict, max_train_samples: int | None = None, max_eval_samples: int | None = None
) -> datasets.DatasetDict:
    """The first `max_train_samples` of `train` and the first `max_eval_samples` of every other split
    (validation and test); `None` keeps a split whole."""
    return datasets.DatasetDict(
        {
            split: _first(examples, max_train_samples if split == "train" else max_eval_samples)
            for split, examples in dataset.items()
        }
    )


def _first(dataset: datasets.Dataset, count: int | None) -> datasets.Dataset:
    return dataset if count is None or count >= len(dataset) else dataset.select(range(count))


# ---------------------------------------------------------------------------------------------
# Training batches


def to_pixel_arrays(
    dataset: datasets.Dataset | datasets.DatasetDict, image_processor
) -> datasets.Dataset | datasets.DatasetDict:
    """Replace `image` by `pixel_values`: each image as the model sees it, stored as uint8 `Array2D`, in torch format.

    Every image goes through `image_processor` (without its normalisation, which `collate_batch` applies per
    batch), the same path as `predict.py` and the app: the validation and test results measure what users
    get. A batched `map`, which `datasets` caches by fingerprint, so the second run of a training script
    skips it. The torch format hands each example out as tensors (`datasets` widens integers to int64).
    """
    if isinstance(dataset, datasets.DatasetDict):
        return datasets.DatasetDict({split: to_pixel_arrays(part, image_processor) for split, part in dataset.items()})
    size = image_processor.size
    pixels = datasets.Array2D(shape=(size["height"], size["width"]), dtype="uint8")
    features = datasets.Features({"pixel_values": pixels, "label": dataset.features["label"]})
    decoded = dataset.map(
        _processed_images,
        batched=True,
        input_columns="image",
        fn_kwargs={"image_processor": image_processor},
        remove_columns="image",
        features=features,
        desc="Preparing images",
    )
    return decoded.with_format("torch")


def _processed_images(images: list[Image.Image], image_processor) -> dict[str, np.ndarray]:
    """The processor's first channel in [0, 255], rounded to uint8 (MNIST digits come back exactly)."""
    pixels = image_processor(images, do_rescale=False, do_normalize=False, return_tensors="np")["pixel_values"]
    return {"pixel_values": np.rint(pixels[:, 0]).astype(np.uint8)}


class InMemorySplit(torch.utils.data.Dataset):
    """One split of `to_pixel_arrays` held as two tensors, so that fetching a batch is one indexing.

    Reading rows from Arrow costs about 12 ms per batch of 128 (`datasets` decodes `Array2D` row by
    row): more than a whole training step on a GPU. MNIST's 55,000 training digits take 43 MB.
    The DataLoader hands `__getitems__`' batch to `collate_batch` as it is.
    """

    def __init__(self, split: datasets.Dataset):
        pixels = split.with_format("numpy", columns=["pixel_values"], dtype=np.uint8)[:]["pixel_values"]
        self.pixel_values = torch.from_numpy(pixels)  # uint8 (N, H, W)
        self.labels = torch.from_numpy(split.with_format("numpy", columns=["label"])[:]["label"])  # int64 (N,)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"pixel_values": self.pixel_values[index], "labels": self.labels[index]}

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        return self[torch.as_tensor(indices)]


def normalize(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 digits (B, H, W) -> float (B, 1, H, W) normalised with the MNIST mean and std."""
    # (pixels / 255 - mean) / std, in two passes over the batch instead of three
    return pixels.unsqueeze(1).float().sub_(255.0 * MNIST_MEAN).div_(255.0 * MNIST_STD)


def collate_batch(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A batch of `InMemorySplit` -> the model's inputs: normalised `pixel_values` and `labels`."""
    return {"pixel_values": normalize(batch["pixel_values"]), "labels": batch["labels"]}


# ---------------------------------------------------------------------------------------------
# Augmentation


def random_affine(
    pixel_values: torch.Tensor,
    rotation: float = 10.0,
    translate: float = 0.1,
    scale: tuple[float, float] = (0.9, 1.1),
    shear: float = 10.0,
    hflip: bool = False,
    fill: float = MNIST_BACKGROUND,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Move each image of a (B, C, H, W) float batch by its own random affine map, in one `grid_sample`.

    Per image: a rotation in [-rotation, rotation] degrees, a shift in [-translate, translate]
    of the image side along each axis, a zoom in `scale`, a horizontal shear in [-shear, shear]
    degrees and, with `hflip`, a mirror image with probability 1/2. What moves in from outside
    the image is `fill` (default: black after MNIST normalisation). The random draws come from
    `generator` (on its own device), so a seeded generator gives the same batch every time.
    """
    batch = pixel_values.shape[0]
    device = generator.device if generator is not None else pixel_values.device
    draws = torch.rand(batch, 6, generator=generator, device=device).to(pixel_values.device)

    def uniform(column: int, low: float, high: float) -> torch.Tensor:
        return low + (high - low) * draws[:, column]

    angle = torch.deg2rad(uniform(0, -rotation, rotation))
    shear_angle = torch.deg2rad(uniform(1, -shear, shear))
    zoom = uniform(2, *scale)
    # Coordinates run from -1 to 1 across the image, so a shift of a fraction f of it is 2f.
    shift = torch.stack([uniform(3, -translate, translate), uniform(4, -translate, translate)], dim=1) * 2
    mirror = torch.where(draws[:, 5] < 0.5, -1.0, 1.0) if hflip else torch.ones_like(zoom)

    cos, sin, zero, one = torch.cos(angle), torch.sin(angle), torch.zeros_like(angle), torch.ones_like(angle)
    rotate = torch.stack([cos, -sin, sin, cos], dim=1).view(batch, 2, 2)
    shear_x = torch.stack([one, torch.tan(shear_angle), zero, one], dim=1).view(batch, 2, 2)
    stretch = torch.diag_embed(torch.stack([zoom * mirror, zoom], dim=1))
    forward = rotate @ shear_x @ stretch  # (B, 2, 2): where each input point goes
    # affine_grid asks the opposite question: for each output pixel, where to read the input. The 2x2 inverse
    # in closed form: torch.linalg.inv would make a GPU wait for the CPU at every batch, to check for errors.
    a, b, c, d = forward.reshape(batch, 4).unbind(1)
    inverse = torch.stack([d, -b, -c, a], dim=1).view(batch, 2, 2) / (a * d - b * c).view(batch, 1, 1)
    theta = torch.cat([inverse, -inverse @ shift.unsqueeze(2)], dim=2).to(pixel_values.dtype)  # (B, 2, 3)
    grid = F.affine_grid(theta, list(pixel_values.shape), align_corners=False)
    # grid_sample pads with zeros: sample the difference to `fill` so the padding becomes `fill`.
    moved = F.grid_sample(pixel_values - fill, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return moved + fill


@dataclass
class Augmentation:
    """How each training batch changes at random: train.py's augmentation flags, and the augmenter itself (call
    it on a normalised batch). A random affine map per digit (`random_affine`) and, with `upload_augmentation`,
    the digits then made to look like uploads after the stock ViT processor (`upload_augmentation.as_uploads`:
    the root model's training)."""

    rotation: float = field(default=10.0, metadata={"help": "Augmentation: max rotation in degrees (0: none)."})
    translate: float = field(default=0.1, metadata={"help": "Augmentation: max shift, a fraction of the side."})
    zoom: float = field(default=0.1, metadata={"help": "Augmentation: scale drawn from [1 - zoom, 1 + zoom]."})
    shear: float = field(default=10.0, metadata={"help": "Augmentation: max horizontal shear in degrees."})
    hflip: bool = field(default=False, metadata={"help": "Augmentation: mirror half the digits (hurts MNIST)."})
    upload_augmentation: bool = field(
        default=False,
        metadata={"help": "Augmentation: make most digits look like uploads after the stock ViT processor (either "
                  "ink polarity, any size and place, dim or tinted paper, faint or bold ink, uneven light, a shadow "
                  "band, glare, lines, the desk, a sticky note, blur, noise): the Hub root model's training."},
    )

    def __call__(self, pixel_values: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.as_uploads(self.moved(pixel_values, generator), generator)

    def moved(self, pixel_values: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Each digit of the normalised batch under its own random affine map."""
        return random_affine(
            pixel_values, rotation=self.rotation, translate=self.translate, scale=(1 - self.zoom, 1 + self.zoom),
            shear=self.shear, hflip=self.hflip, generator=generator,
        )

    def as_uploads(self, pixel_values: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """With `upload_augmentation`, the normalised digits made to look like uploads; else as they are."""
        if not self.upload_augmentation:
            return pixel_values
        brightness = pixel_values * MNIST_STD + MNIST_MEAN
        return (as_uploads(brightness, generator=generator) - MNIST_MEAN) / MNIST_STD
