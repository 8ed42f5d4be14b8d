"""mnist_vit.data: IDX reading, the cached conversion, splits, pixel arrays, batches and augmentation."""

import gzip
import hashlib
import struct
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from PIL import Image

from conftest import MNIST_DIR, idx_bytes, write_idx
from mnist_vit import MnistViTImageProcessor, data

# SHA-256 of the uncompressed files, from ../shared/mnist/README.md.
README_SHA256 = {
    "train-images-idx3-ubyte.gz": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte.gz": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte.gz": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte.gz": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
HUB_MNIST_FEATURES = datasets.Features(
    {"image": datasets.Image(), "label": datasets.ClassLabel(names=["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"])}
)
SMALL_TRAIN, SMALL_TEST = 200, 100


@pytest.fixture(scope="session")
def real_mnist() -> dict[str, np.ndarray]:
    """The four real IDX files as arrays, by file name."""
    return {name: data.read_idx(MNIST_DIR / name) for name in README_SHA256}


@pytest.fixture(scope="session")
def small_mnist(tmp_path_factory, real_mnist) -> Path:
    """The first 200 training and 100 test digits as IDX files, in the three spellings MNIST comes in."""
    folder = tmp_path_factory.mktemp("small_mnist")
    write_idx(folder / "train-images-idx3-ubyte.gz", real_mnist["train-images-idx3-ubyte.gz"][:SMALL_TRAIN], True)
    write_idx(folder / "train-labels-idx1-ubyte", real_mnist["train-labels-idx1-ubyte.gz"][:SMALL_TRAIN], False)
    write_idx(folder / "t10k-images.idx3-ubyte", real_mnist["t10k-images-idx3-ubyte.gz"][:SMALL_TEST], False)
    write_idx(folder / "t10k-labels.idx1-ubyte.gz", real_mnist["t10k-labels-idx1-ubyte.gz"][:SMALL_TEST], True)
    return folder


@pytest.fixture(scope="session")
def small_dataset(small_mnist, tmp_path_factory) -> datasets.DatasetDict:
    return data.load_idx_dataset(small_mnist, cache_dir=tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="session")
def small_pixels(small_dataset) -> datasets.DatasetDict:
    return data.to_pixel_arrays(small_dataset, MnistViTImageProcessor())


# ---------------------------------------------------------------------------------------------
# read_idx


def test_read_idx_gives_the_real_files_byte_for_byte(real_mnist):
    assert real_mnist["train-images-idx3-ubyte.gz"].shape == (60000, 28, 28)
    assert real_mnist["train-labels-idx1-ubyte.gz"].shape == (60000,)
    assert real_mnist["t10k-images-idx3-ubyte.gz"].shape == (10000, 28, 28)
    assert real_mnist["t10k-labels-idx1-ubyte.gz"].shape == (10000,)
    for name, array in real_mnist.items():
        assert array.dtype == np.uint8
        assert hashlib.sha256(idx_bytes(array)).hexdigest() == README_SHA256[name], name


def test_gzipped_and_plain_files_read_the_same(tmp_path, real_mnist):
    labels = real_mnist["t10k-labels-idx1-ubyte.gz"]
    plain = write_idx(tmp_path / "labels-idx1-ubyte", labels, compress=False)
    gzipped = write_idx(tmp_path / "labels-idx1-ubyte.gz", labels, compress=True)
    # Gzip is recognised by its magic bytes, whatever the name says.
    gzipped_without_suffix = write_idx(tmp_path / "labels-gz-idx1-ubyte", labels, compress=True)
    for path in (plain, gzipped, gzipped_without_suffix):
        np.testing.assert_array_equal(data.read_idx(path), labels)


def test_truncated_file_says_what_the_header_promised(tmp_path):
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(bytes([0, 0, 8, 3]) + struct.pack(">3I", 10000, 28, 28) + bytes(123))
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte is truncated: header says 10000x28x28 = 7840000 bytes, found 123"):
        data.read_idx(path)


def test_truncated_gzip_stream_is_reported(tmp_path):
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.arange(200, dtype=np.uint8)))[:40])
    with pytest.raises(ValueError, match="train-labels-idx1-ubyte.gz is a damaged gzip file"):
        data.read_idx(path)


def test_extra_bytes_are_reported(tmp_path):
    path = tmp_path / "labels-idx1-ubyte"
    path.write_bytes(idx_bytes(np.arange(10, dtype=np.uint8)) + b"\x00")
    with pytest.raises(ValueError, match="labels-idx1-ubyte is longer than its header says: header says 10 = 10 bytes, found 11"):
        data.read_idx(path)


@pytest.mark.parametrize("start", [b"\x00\x00\x0d\x01", b"\x01\x00\x08\x01", b"\x00\x00\x08\x00", b"\x00\x00"])
def test_bad_magic_is_reported(tmp_path, start):
    path = tmp_path / "not-idx"
    path.write_bytes(start + struct.pack(">I", 1) + b"\x07")
    with pytest.raises(ValueError, match="not-idx is not a uint8 IDX file"):
        data.read_idx(path)


def test_missing_file_is_named_with_the_expected_four(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing-here.gz does not exist") as error:
        data.read_idx(tmp_path / "nothing-here.gz")
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        assert name in str(error.value)


# ---------------------------------------------------------------------------------------------
# The IDX dataset and its cache


def test_small_dataset_has_the_hub_schema_and_the_pixels(small_dataset, real_mnist):
    assert set(small_dataset) == {"train", "test"}
    for split, count, images_file, labels_file in (
        ("train", SMALL_TRAIN, "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
        ("test", SMALL_TEST, "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
    ):
        examples = small_dataset[split]
        assert examples.features == HUB_MNIST_FEATURES
        assert len(examples) == count
        for index in (0, count - 1):
            image = examples[index]["image"]
            assert image.mode == "L"
            np.testing.assert_array_equal(np.asarray(image), real_mnist[images_file][index])
        np.testing.assert_array_equal(examples["label"][:], real_mnist[labels_file][:count])


@pytest.mark.slow
def test_full_mnist_loads_with_the_hub_schema(tmp_path, real_mnist):
    dataset = data.load_image_dataset(data_dir=MNIST_DIR, cache_dir=tmp_path)
    assert {split: len(examples) for split, examples in dataset.items()} == {"train": 60000, "test": 10000}
    assert dataset["train"].features == HUB_MNIST_FEATURES
    assert dataset["test"].features == HUB_MNIST_FEATURES
    np.testing.assert_array_equal(np.asarray(dataset["test"][9999]["image"]), real_mnist["t10k-images-idx3-ubyte.gz"][9999])


def test_second_load_reads_the_cache_without_converting(small_mnist, tmp_path, monkeypatch):
    first = data.load_idx_dataset(small_mnist, cache_dir=tmp_path)

    def convert_again(files):
        raise AssertionError("the IDX files were converted again despite the cache")

    monkeypatch.setattr(data, "idx_to_dataset_dict", convert_again)
    second = data.load_idx_dataset(small_mnist, cache_dir=tmp_path)
    assert second["train"]["label"][:] == first["train"]["label"][:]
    entries = list((tmp_path / "mnist_vit_idx").iterdir())
    assert len(entries) == 1 and not entries[0].name.startswith("."), entries


def test_changed_file_gets_a_new_cache(small_mnist, tmp_path, real_mnist):
    folder = tmp_path / "mnist"
    folder.mkdir()
    for path in small_mnist.iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    data.load_idx_dataset(folder, cache_dir=tmp_path)
    labels = real_mnist["t10k-labels-idx1-ubyte.gz"][:SMALL_TEST].copy()
    labels[0] = (labels[0] + 1) % 10
    write_idx(folder / "t10k-labels.idx1-ubyte.gz", labels, compress=True)
    changed = data.load_idx_dataset(folder, cache_dir=tmp_path)
    assert changed["test"][0]["label"] == labels[0]
    assert len(list((tmp_path / "mnist_vit_idx").iterdir())) == 2


def test_interrupted_conversion_leaves_no_cache(small_mnist, tmp_path, monkeypatch):
    def interrupted_save(self, path, **kwargs):
        Path(path, "half-written").write_text("")
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(datasets.DatasetDict, "save_to_disk", interrupted_save)
        with pytest.raises(KeyboardInterrupt):
            data.load_idx_dataset(small_mnist, cache_dir=tmp_path)
    assert list((tmp_path / "mnist_vit_idx").iterdir()) == []
    assert len(data.load_idx_dataset(small_mnist, cache_dir=tmp_path)["test"]) == SMALL_TEST


def test_missing_idx_file_is_named(small_mnist, tmp_path):
    for path in small_mnist.iterdir():
        if not path.name.startswith("t10k-images"):
            (tmp_path / path.name).write_bytes(path.read_bytes())
    with pytest.raises(FileNotFoundError, match=r"is missing t10k-images-idx3-ubyte\[.gz\];"):
        data.load_image_dataset(data_dir=tmp_path, cache_dir=tmp_path / "cache")


def test_image_and_label_counts_must_match(small_mnist, tmp_path, real_mnist):
    for path in small_mnist.iterdir():
        (tmp_path / path.name).write_bytes(path.read_bytes())
    write_idx(tmp_path / "t10k-labels.idx1-ubyte.gz", real_mnist["t10k-labels-idx1-ubyte.gz"][: SMALL_TEST - 1], True)
    message = rf"t10k-images.idx3-ubyte holds {SMALL_TEST} images but .*t10k-labels.idx1-ubyte.gz holds {SMALL_TEST - 1} labels"
    with pytest.raises(ValueError, match=message):
        data.load_idx_dataset(tmp_path, cache_dir=tmp_path / "cache")


# ---------------------------------------------------------------------------------------------
# Other sources


def test_folder_without_data_names_what_it_expected(tmp_path):
    (tmp_path / "notes.txt").write_text("no digits here")
    with pytest.raises(ValueError, match=r"neither MNIST IDX files \(train-images-idx3-ubyte\[.gz\].*nor an image folder"):
        data.load_image_dataset(data_dir=tmp_path)


def write_image_folder(root: Path, splits: tuple[str, ...]) -> None:
    """RGB 32x32 pictures of one colour per class, in <split>/<class>/ folders."""
    colours = {"red": (200, 0, 0), "blue": (0, 0, 200)}
    for split in splits:
        for name, colour in colours.items():
            (root / split / name).mkdir(parents=True)
            for index in range(3):
                Image.new("RGB", (32, 32), colour).save(root / split / name / f"{index}.png")


def test_image_folder_loads_as_image_and_label(tmp_path):
    write_image_folder(tmp_path / "pictures", ("train", "test"))
    dataset = data.load_image_dataset(data_dir=tmp_path / "pictures", cache_dir=tmp_path / "cache")
    assert {split: len(examples) for split, examples in dataset.items()} == {"train": 6, "test": 6}
    assert dataset["train"].features == datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(names=["blue", "red"])}
    )


def test_image_folder_without_test_split_is_refused(tmp_path):
    write_image_folder(tmp_path / "pictures", ("train",))
    with pytest.raises(ValueError, match="has no 'test' split"):
        data.load_image_dataset(data_dir=tmp_path / "pictures", cache_dir=tmp_path / "cache")


def test_columns_are_found_by_type_and_renamed():
    features = datasets.Features(
        {"note": datasets.Value("string"), "img": datasets.Image(), "fine_label": datasets.ClassLabel(names=["a", "b"])}
    )
    picture = Image.new("L", (28, 28))
    split = datasets.Dataset.from_dict({"note": ["x"], "img": [picture], "fine_label": [1]}, features=features)
    dataset = data.select_image_and_label(datasets.DatasetDict({"train": split, "test": split}), "example")
    assert dataset["train"].column_names == ["image", "label"]
    assert dataset["test"][0]["label"] == 1


def test_dataset_without_class_labels_is_refused():
    split = datasets.Dataset.from_dict(
        {"image": [Image.new("L", (28, 28))], "label": [3]},
        features=datasets.Features({"image": datasets.Image(), "label": datasets.Value("int64")}),
    )
    with pytest.raises(ValueError, match=r"example has no label column \(datasets.ClassLabel\)"):
        data.select_image_and_label(datasets.DatasetDict({"train": split, "test": split}), "example")


# ---------------------------------------------------------------------------------------------
# Splits and limits


def image_bytes(examples: datasets.Dataset) -> list[bytes]:
    """The stored PNG bytes of each example: an identity for each digit."""
    return [image["bytes"] for image in examples.cast_column("image", datasets.Image(decode=False))["image"]]


def test_validation_is_held_out_of_train_with_a_seed(small_dataset):
    split = data.split_train_validation(small_dataset, validation_size=50, seed=0)
    assert {name: len(examples) for name, examples in split.items()} == {"train": 150, "validation": 50, "test": SMALL_TEST}
    assert sorted(image_bytes(split["train"]) + image_bytes(split["validation"])) == sorted(image_bytes(small_dataset["train"]))
    again = data.split_train_validation(small_dataset, validation_size=50, seed=0)
    other_seed = data.split_train_validation(small_dataset, validation_size=50, seed=1)
    assert image_bytes(again["validation"]) == image_bytes(split["validation"])
    assert image_bytes(other_seed["validation"]) != image_bytes(split["validation"])


def test_existing_validation_split_is_kept(small_dataset):
    with_validation = datasets.DatasetDict(
        {"train": small_dataset["train"], "validation": small_dataset["test"].select(range(7)), "test": small_dataset["test"]}
    )
    split = data.split_train_validation(with_validation)
    assert {name: len(examples) for name, examples in split.items()} == {"train": SMALL_TRAIN, "validation": 7, "test": SMALL_TEST}


def test_limit_samples_caps_train_and_both_eval_splits(small_dataset):
    split = data.split_train_validation(small_dataset, validation_size=50)
    limited = data.limit_samples(split, max_train_samples=20, max_eval_samples=10)
    assert {name: len(examples) for name, examples in limited.items()} == {"train": 20, "validation": 10, "test": 10}
    assert image_bytes(limited["test"]) == image_bytes(split["test"])[:10]
    untouched = data.limit_samples(split, max_train_samples=None, max_eval_samples=10_000)
    assert {name: len(examples) for name, examples in untouched.items()} == {"train": 150, "validation": 50, "test": SMALL_TEST}


# ---------------------------------------------------------------------------------------------
# Pixel arrays and batches


def test_pixel_arrays_are_the_decoded_digits(small_pixels, real_mnist):
    train = small_pixels["train"]
    assert train.features["pixel_values"] == datasets.Array2D(shape=(28, 28), dtype="uint8")
    assert train.column_names == ["pixel_values", "label"]
    example = train[5]
    assert isinstance(example["pixel_values"], torch.Tensor)
    np.testing.assert_array_equal(example["pixel_values"].numpy(), real_mnist["train-images-idx3-ubyte.gz"][5])
    assert int(example["label"]) == real_mnist["train-labels-idx1-ubyte.gz"][5]


def test_pixel_arrays_are_what_the_image_processor_makes_of_each_picture(real_mnist):
    """Training and evaluation see pictures as predict.py does: a photo-like upload becomes the MNIST digit."""
    digit = real_mnist["t10k-images-idx3-ubyte.gz"][0]
    page = Image.new("RGB", (120, 90), (240, 230, 200))  # dark ink, off-centre on cream paper, three times larger
    ink = Image.fromarray(digit).resize((84, 84), Image.Resampling.BILINEAR)
    page.paste(Image.new("RGB", (84, 84), (30, 30, 80)), (30, 4), mask=ink)
    pictures = datasets.Dataset.from_dict(
        {"image": [page], "label": [0]},
        features=datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["x"])}),
    )
    processor = MnistViTImageProcessor(size={"height": 32, "width": 32})
    pixels = data.to_pixel_arrays(pictures, processor)[0]["pixel_values"]
    expected = processor(page, do_rescale=False, do_normalize=False, return_tensors="np")["pixel_values"][0, 0]
    assert pixels.shape == (32, 32)
    np.testing.assert_array_equal(pixels.numpy(), np.rint(expected))
    assert np.corrcoef(pixels.numpy()[2:-2, 2:-2].ravel(), digit.ravel())[0, 1] > 0.9


def test_collate_batch_normalises_through_a_data_loader(small_pixels, real_mnist):
    split = data.InMemorySplit(small_pixels["train"])
    assert len(split) == len(small_pixels["train"]) and split.pixel_values.dtype == torch.uint8
    loader = torch.utils.data.DataLoader(split, batch_size=8, collate_fn=data.collate_batch)
    batch = next(iter(loader))
    assert batch["pixel_values"].shape == (8, 1, 28, 28) and batch["pixel_values"].dtype == torch.float32
    assert batch["labels"].shape == (8,) and batch["labels"].dtype == torch.long
    raw = torch.from_numpy(real_mnist["train-images-idx3-ubyte.gz"][:8].astype(np.float32) / 255)
    torch.testing.assert_close(batch["pixel_values"][:, 0] * data.MNIST_STD + data.MNIST_MEAN, raw, atol=1e-5, rtol=0)
    assert batch["labels"].tolist() == real_mnist["train-labels-idx1-ubyte.gz"][:8].tolist()
    assert batch["pixel_values"].min().item() == pytest.approx(data.MNIST_BACKGROUND)


# ---------------------------------------------------------------------------------------------
# Augmentation


@pytest.fixture(scope="module")
def digits(real_mnist) -> torch.Tensor:
    """The first 32 test digits, normalised, (32, 1, 28, 28)."""
    images = real_mnist["t10k-images-idx3-ubyte.gz"][:32].copy()
    return data.normalize(torch.from_numpy(images))


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


IDENTITY = {"rotation": 0.0, "translate": 0.0, "scale": (1.0, 1.0), "shear": 0.0}


def test_identity_parameters_change_nothing(digits):
    torch.testing.assert_close(data.random_affine(digits, **IDENTITY, generator=seeded(0)), digits, atol=1e-5, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_augmentation_keeps_shape_dtype_and_device(digits, dtype):
    moved = data.random_affine(digits.to(dtype), generator=seeded(0))
    assert (moved.shape, moved.dtype, moved.device) == (digits.shape, dtype, digits.device)
    assert not torch.allclose(moved, digits.to(dtype))


def test_seeded_augmentation_repeats(digits):
    first = data.random_affine(digits, generator=seeded(3))
    torch.testing.assert_close(data.random_affine(digits, generator=seeded(3)), first, atol=0, rtol=0)
    assert not torch.allclose(data.random_affine(digits, generator=seeded(4)), first)
    torch.testing.assert_close(data.Augmentation()(digits, generator=seeded(3)), first, atol=0, rtol=0)


def test_hflip_mirrors_about_half_the_images(digits):
    flipped = data.random_affine(digits, **IDENTITY, hflip=True, generator=seeded(0))
    mirrored = [torch.allclose(after, before.flip(-1), atol=1e-5) for after, before in zip(flipped, digits)]
    unchanged = [torch.allclose(after, before, atol=1e-5) for after, before in zip(flipped, digits)]
    assert all(m != u for m, u in zip(mirrored, unchanged))
    assert 0 < sum(mirrored) < len(digits)


def test_area_moved_in_from_outside_is_background(digits):
    shifted = data.random_affine(digits, **{**IDENTITY, "translate": 0.3}, generator=seeded(0))
    # Only the ink moves: the minimum stays the normalised black, never the 0 that grid_sample pads with.
    assert shifted.min().item() == pytest.approx(data.MNIST_BACKGROUND, abs=1e-5)
    blank = torch.full((4, 1, 28, 28), data.MNIST_BACKGROUND)
    torch.testing.assert_close(data.random_affine(blank, generator=seeded(0)), blank)


def test_scale_below_one_shrinks_the_digit(digits):
    ink = digits - data.MNIST_BACKGROUND
    shrunk = data.random_affine(digits, **{**IDENTITY, "scale": (0.5, 0.5)}, generator=seeded(0)) - data.MNIST_BACKGROUND
    ratio = (shrunk.sum(dim=(1, 2, 3)) / ink.sum(dim=(1, 2, 3))).mean().item()
    assert ratio == pytest.approx(0.25, abs=0.05)
