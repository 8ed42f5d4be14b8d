"""Typed digits for training (`train.py --typed_digits N`): the fonts, the pictures and the training split."""

from pathlib import Path

import datasets
import matplotlib
import pytest
from matplotlib import font_manager

from conftest import QUICK_RUN_FLAGS, TINY_MODEL, run_train
from mnist_vit.errors import UserError
from mnist_vit.inference import DigitClassifier
from mnist_vit.typed_digits import HELD_OUT_FONTS, sets_the_digits, training_fonts, typed_digits_split

FEATURES = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=[str(d) for d in range(10)])})


def test_training_fonts_leave_out_the_benchmarks_fonts():
    fonts = training_fonts()
    assert len(fonts) >= 10, "install fonts (fonts-liberation, fonts-urw-base35): .ci/run does"
    assert not [font.name for font in fonts if font.name.startswith(HELD_OUT_FONTS)]
    assert sets_the_digits(font_manager.findfont("DejaVu Sans"))  # held out for its name, not for lacking digits


def test_a_font_without_digits_is_not_a_training_font(tmp_path):
    fonts = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    assert not sets_the_digits(str(fonts / "STIXSizOneSymReg.ttf"))  # large symbols only: no digit glyphs
    assert not sets_the_digits(str(fonts / "cmsy10.ttf"))  # TeX's math symbols where the digits would be
    not_a_font = tmp_path / "broken.ttf"
    not_a_font.write_bytes(b"not a font")
    assert not sets_the_digits(str(not_a_font))


def test_typed_digits_take_the_labels_named_for_them_and_other_labels_are_refused():
    shuffled = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=list("9876543210"))})
    split = typed_digits_split(10, shuffled, seed=0)
    assert [shuffled["label"].int2str(label) for label in split["label"]] == [str(digit) for digit in range(10)]
    clothes = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["shirt", "shoe"])})
    with pytest.raises(UserError, match="lack 0, 1, 2.*leave --typed_digits out"):
        typed_digits_split(10, clothes, seed=0)


def test_typed_digits_are_the_digits_they_are_labelled(shipped_model):
    split = typed_digits_split(200, FEATURES, seed=0)
    assert split.features == FEATURES
    assert list(split["label"]) == [index % 10 for index in range(200)]
    # the shipped model, which never saw these fonts, reads them: the pictures show the digits of their labels
    predictions = DigitClassifier.from_pretrained(shipped_model).predict(list(split["image"]))
    read = [prediction is not None and prediction.label == str(label) for prediction, label in zip(predictions, list(split["label"]))]
    assert sum(read) >= 0.9 * len(read)


@pytest.mark.slow
def test_a_run_with_typed_digits_trains_on_them(tmp_path):
    result = run_train(*QUICK_RUN_FLAGS, *TINY_MODEL, "--typed_digits", "300", "--output_dir", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "on 2,300 examples" in result.stdout
