import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoImageProcessor, AutoModel, AutoModelForImageClassification

from mnist_vit import MnistViTConfig, MnistViTForImageClassification, MnistViTImageProcessor, MnistViTModel


def tiny_config(**overrides) -> MnistViTConfig:
    return MnistViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, **overrides)


@pytest.fixture(scope="module")
def overfit_model(mnist_train_digits):
    """A tiny model (`tiny_config`) trained on 64 real MNIST digits until it knows them by heart."""
    images, labels = mnist_train_digits
    processor = MnistViTImageProcessor()
    pixel_values = processor(list(images), return_tensors="pt").pixel_values
    labels = torch.tensor(labels, dtype=torch.long)
    torch.manual_seed(0)
    model = MnistViTForImageClassification(tiny_config())
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(300):
        loss = model(pixel_values, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
        if loss.item() < 0.01:
            break
    return model.eval(), processor, losses


def test_default_config_is_the_original_model():
    config = MnistViTConfig()
    assert (config.image_size, config.patch_size, config.num_channels) == (28, 7, 1)
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (128, 4, 4)
    assert config.intermediate_size == 512 and config.hidden_act == "gelu"
    assert config.id2label == {i: str(i) for i in range(10)} and config.label2id == {str(i): i for i in range(10)}
    assert config.problem_type == "single_label_classification"
    model = MnistViTForImageClassification(config)
    assert sum(p.numel() for p in model.parameters()) == 803_338


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"patch_size": 5}, "must be divisible by `patch_size`"),
        ({"num_attention_heads": 3}, "must be divisible by `num_attention_heads`"),
        ({"hidden_size": 0}, "`hidden_size` must be a positive integer"),
        ({"num_hidden_layers": -1}, "`num_hidden_layers` must be a positive integer"),
        ({"num_channels": 2}, "`num_channels` must be 1"),
    ],
)
def test_invalid_config_raises_value_error(overrides, message):
    with pytest.raises(ValueError, match=message):
        MnistViTConfig(**overrides)


def test_outputs_and_shapes():
    model = MnistViTForImageClassification(tiny_config()).eval()
    model.set_attn_implementation("eager")  # sdpa returns no attention maps
    pixel_values = torch.randn(3, 1, 28, 28)
    outputs = model(pixel_values, labels=torch.tensor([0, 1, 2]), output_hidden_states=True, output_attentions=True)
    assert outputs.logits.shape == (3, 10)
    assert outputs.loss.ndim == 0 and outputs.loss.item() > 0
    assert len(outputs.hidden_states) == 3 and outputs.hidden_states[0].shape == (3, 17, 32)
    assert len(outputs.attentions) == 2 and outputs.attentions[0].shape == (3, 4, 17, 17)
    torch.testing.assert_close(outputs.attentions[0].sum(-1), torch.ones(3, 4, 17))

    as_tuple = model(pixel_values, return_dict=False)
    assert isinstance(as_tuple, tuple)
    torch.testing.assert_close(as_tuple[0], outputs.logits)

    base = MnistViTModel(tiny_config())
    assert base(pixel_values).last_hidden_state.shape == (3, 17, 32)


def test_eager_and_sdpa_agree():
    torch.manual_seed(0)
    model = MnistViTForImageClassification(MnistViTConfig()).eval()
    assert model.config._attn_implementation == "sdpa"
    pixel_values = torch.randn(8, 1, 28, 28)
    sdpa_logits = model(pixel_values).logits
    model.set_attn_implementation("eager")
    eager_logits = model(pixel_values).logits
    torch.testing.assert_close(eager_logits, sdpa_logits, atol=1e-5, rtol=0)


def test_gradient_checkpointing_gives_same_loss_and_gradients():
    torch.manual_seed(0)
    model = MnistViTForImageClassification(tiny_config()).train()
    pixel_values, labels = torch.randn(4, 1, 28, 28), torch.tensor([3, 1, 4, 1])

    def loss_and_grads():
        model.zero_grad()
        loss = model(pixel_values, labels=labels).loss
        loss.backward()
        return loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters()}

    plain_loss, plain_grads = loss_and_grads()
    model.activation_checkpointing_enable()
    assert model.vit.layers[0].gradient_checkpointing
    checkpointed_loss, checkpointed_grads = loss_and_grads()
    torch.testing.assert_close(checkpointed_loss, plain_loss)
    for name, grad in plain_grads.items():
        torch.testing.assert_close(checkpointed_grads[name], grad, msg=name)


def test_overfits_64_real_digits(overfit_model):
    _, _, losses = overfit_model
    assert losses[0] > 1.5
    assert min(losses) < 0.1


def test_interpolate_pos_encoding_runs_on_larger_images(overfit_model):
    model, _, _ = overfit_model
    larger = torch.randn(2, 1, 56, 56)
    with pytest.raises(ValueError, match="interpolate_pos_encoding=True"):
        model(larger)
    assert model(larger, interpolate_pos_encoding=True).logits.shape == (2, 10)
    # at the trained size interpolation is the identity
    same = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(model(same, interpolate_pos_encoding=True).logits, model(same).logits)


@pytest.mark.parametrize(
    ("shape", "message"),
    [((1, 28, 28), "got a 3-d tensor"), ((2, 3, 28, 28), "got 3 channels"), ((2, 1, 32, 32), "got 32x32 images")],
)
def test_bad_pixel_values_raise_value_error(shape, message):
    model = MnistViTForImageClassification(tiny_config())
    with pytest.raises(ValueError, match=r"\(batch_size, 1, 28, 28\)") as error:
        model(torch.randn(shape))
    assert message in str(error.value)


def test_save_and_load_is_bit_exact_and_safetensors_only(overfit_model, tmp_path):
    model, processor, _ = overfit_model
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    files = {path.name for path in tmp_path.iterdir()}
    assert "model.safetensors" in files and not any(name.endswith((".bin", ".pt", ".pkl")) for name in files)
    # the code travels with the weights, for trust_remote_code
    assert {"configuration_mnist_vit.py", "modeling_mnist_vit.py", "image_processing_mnist_vit.py"} <= files
    auto_map = json.loads((tmp_path / "config.json").read_text())["auto_map"]
    assert auto_map["AutoModelForImageClassification"] == "modeling_mnist_vit.MnistViTForImageClassification"
    assert auto_map["AutoModel"] == "modeling_mnist_vit.MnistViTModel"

    loaded = MnistViTForImageClassification.from_pretrained(tmp_path)
    for (name, saved), (_, restored) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(saved, restored), name

    auto_model = AutoModelForImageClassification.from_pretrained(tmp_path)
    assert type(auto_model) is MnistViTForImageClassification
    assert type(AutoModel.from_pretrained(tmp_path)) is MnistViTModel
    assert type(AutoImageProcessor.from_pretrained(tmp_path)) is MnistViTImageProcessor


REMOTE_CODE_CHECK = textwrap.dedent(
    """
    import json, sys
    sys.modules["mnist_vit"] = None  # the package must not be what makes this work
    try:
        import mnist_vit
    except ImportError:
        pass
    else:
        raise SystemExit("mnist_vit is importable here")
    from PIL import Image
    from transformers import AutoModel, AutoModelForImageClassification, pipeline

    model_dir, *image_paths = sys.argv[1:]
    model = AutoModelForImageClassification.from_pretrained(model_dir, trust_remote_code=True)
    classifier = pipeline("image-classification", model=model_dir, trust_remote_code=True)
    results = [classifier(Image.open(path))[0] for path in image_paths]
    encoder = AutoModel.from_pretrained(model_dir, trust_remote_code=True)
    features = pipeline("image-feature-extraction", model=model_dir, trust_remote_code=True)(Image.open(image_paths[0]))
    print(json.dumps({
        "model_class": type(model).__name__, "labels": [result["label"] for result in results],
        "encoder_class": type(encoder).__name__, "features_shape": [len(features), len(features[0]), len(features[0][0])],
    }))
    """
)


@pytest.mark.slow  # a fresh Python process: seconds
def test_remote_code_round_trip_without_the_package(overfit_model, mnist_train_digits, tmp_path):
    model, processor, _ = overfit_model
    model_dir = tmp_path / "model"
    model.save_pretrained(model_dir)
    processor.save_pretrained(model_dir)

    images, labels = mnist_train_digits
    gray = tmp_path / "gray.png"
    Image.fromarray(images[0]).save(gray)
    # a photo-like upload: dark ink on a tinted background, larger and off-centre
    ink = np.asarray(Image.fromarray(images[1]).resize((140, 140), Image.BILINEAR), dtype=np.float32) / 255
    canvas = np.ones((240, 200, 3), dtype=np.float32) * np.array([0.95, 0.9, 0.75])
    canvas[30:170, 40:180] *= 1 - 0.85 * ink[..., None]
    photo = tmp_path / "photo.jpg"
    Image.fromarray((canvas * 255).astype(np.uint8)).save(photo)

    check = tmp_path / "check.py"
    check.write_text(REMOTE_CODE_CHECK)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, str(check), str(model_dir), str(gray), str(photo)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["model_class"] == "MnistViTForImageClassification"
    assert report["labels"] == [str(labels[0]), str(labels[1])]
    assert report["encoder_class"] == "MnistViTModel"
    assert report["features_shape"] == [1, 17, model.config.hidden_size]  # CLS + 16 patches


def test_return_dict_false_gives_tuples(mnist_train_digits):
    model = MnistViTForImageClassification(tiny_config(return_dict=False)).eval()
    pixel_values = MnistViTImageProcessor()(list(mnist_train_digits[0][:2]), return_tensors="pt").pixel_values
    loss, logits = model(pixel_values, labels=torch.tensor([0, 1]))
    assert logits.shape == (2, 10) and loss.ndim == 0
    (logits_only,) = model(pixel_values)
    assert torch.equal(logits_only, logits)
