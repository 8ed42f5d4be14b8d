"""Export to a plain transformers `ViTForImageClassification`: a model every Hub tool can serve.

The Hub widget, Inference Providers, Inference Endpoints, transformers.js and the ONNX exporters run
no remote code. Our model and transformers' ViT share every module and parameter name, so the export
copies tensors; what differs is the input, and both differences fold into the patch embedding:

- Channels. Those tools hand the model RGB pictures (the `image-classification` pipeline converts every
  image to RGB), and the stock `ViTImageProcessor` cannot make one gray channel of them. So the export
  takes 3 channels and converts in its first layer. Our processor's gray is PIL's luma,
  gray = 0.299 R + 0.587 G + 0.114 B, and a convolution is linear in its input: with the weight
  W_rgb[:, c] = luma[c] * W[:, 0] the export sees exactly the gray picture ours sees.
- Normalisation. `ViTImageProcessor` normalises each channel, (x_c - mean) / std. With the same mean and
  std on the three channels and luma weights summing to 1, the luma of the normalised channels is the
  normalised gray: sum_c luma[c] (x_c - mean) / std = (gray - mean) / std.

What the export does not do is our processor's MNIST steps (inverting dark ink, cropping, scaling the
digit to 20 pixels, centring its mass): its processor only resizes to 28x28. A model trained on MNIST alone
then expects MNIST-like pictures, one white digit on black, centred, about 20 pixels tall; one trained with
`--upload_augmentation` (recipes/root.yaml) reads drawings, typed digits and photos that way too, and is what
push_to_hub.py --root_model puts at a repo's root.

    vit, vit_processor = export_to_vit(model, image_processor)
    vit.save_pretrained("export/"); vit_processor.save_pretrained("export/")  # no code, no auto_map
    load_vit_export("export/")  # back into our class, as a 3-channel model
"""

import os

import torch
from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessorPil

from .configuration_mnist_vit import MnistViTConfig
from .image_processing_mnist_vit import LUMA_WEIGHTS, MnistViTImageProcessor
from .modeling_mnist_vit import MnistViTForImageClassification

PATCH_WEIGHT = "vit.embeddings.patch_embeddings.projection.weight"
# Encoder sizes and settings that mean the same in both configs; the channels are what the export changes.
SHARED_CONFIG_KEYS = (
    "image_size", "patch_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
    "hidden_act", "hidden_dropout_prob", "attention_probs_dropout_prob", "initializer_range", "layer_norm_eps",
    "qkv_bias", "id2label", "label2id", "problem_type",
)
# transformers 5 saves ViT weights under their v4 names (`vit.encoder.layer.0.attention.attention.query.weight`),
# which transformers 4 and the tools built on it read, and renames them back when loading its own ViT only:
# our class needs this mapping to read such a file.
VIT_CHECKPOINT_KEY_MAPPING = {
    r"encoder\.layer\.": "layers.",
    r"attention\.attention\.query": "attention.q_proj",
    r"attention\.attention\.key": "attention.k_proj",
    r"attention\.attention\.value": "attention.v_proj",
    r"attention\.output\.dense": "attention.o_proj",
    r"intermediate\.dense": "mlp.fc1",
    r"(?<!attention\.)output\.dense": "mlp.fc2",
}


def single_value(values, name: str) -> float:
    """The one value a list like `image_mean` holds for all channels; the fold needs the same on each."""
    values = [float(value) for value in (values if isinstance(values, (list, tuple)) else [values])]
    if len(set(values)) != 1:
        raise ValueError(
            f"Exporting needs one {name} for all channels, got {values}: the grayscale fold cannot undo "
            "different normalisations per channel."
        )
    return values[0]


def shared_settings(config: MnistViTConfig | ViTConfig) -> dict:
    """The settings our config and transformers' ViT config name alike."""
    return {key: getattr(config, key) for key in SHARED_CONFIG_KEYS}


def vit_config(config: MnistViTConfig) -> ViTConfig:
    """transformers' ViT config of the same encoder, taking RGB."""
    return ViTConfig(**shared_settings(config), num_channels=3)


def rgb_patch_weight(weight: torch.Tensor) -> torch.Tensor:
    """(hidden, C, p, p) weights of a gray model -> (hidden, 3, p, p) weights that see RGB as gray.

    A 3-channel model of ours gets the gray picture repeated on each channel, which sums its channel weights.
    """
    gray_weight = weight.sum(dim=1, keepdim=True)  # (hidden, 1, p, p)
    luma = torch.as_tensor(LUMA_WEIGHTS, dtype=weight.dtype, device=weight.device)
    return gray_weight * luma.view(1, 3, 1, 1)


def export_to_vit(
    model: MnistViTForImageClassification, image_processor: MnistViTImageProcessor
) -> tuple[ViTForImageClassification, ViTImageProcessorPil]:
    """The same classifier as a 3-channel `ViTForImageClassification` with a stock ViT image processor."""
    mean = single_value(image_processor.image_mean, "image_mean")
    std = single_value(image_processor.image_std, "image_std")
    state = model.state_dict()
    state[PATCH_WEIGHT] = rgb_patch_weight(state[PATCH_WEIGHT])
    vit = ViTForImageClassification(vit_config(model.config)).to(model.dtype)
    vit.load_state_dict(state, strict=True)
    size = model.config.image_size
    vit_processor = ViTImageProcessorPil(
        do_convert_rgb=True,  # gray pictures given straight to the processor become RGB, as in the pipeline
        size={"height": size, "width": size},
        resample=image_processor.resample,
        do_rescale=image_processor.do_rescale,
        rescale_factor=image_processor.rescale_factor,
        do_normalize=image_processor.do_normalize,
        image_mean=[mean] * 3,
        image_std=[std] * 3,
    )
    return vit.eval(), vit_processor


def load_vit_export(path: str | os.PathLike) -> MnistViTForImageClassification:
    """Read an exported folder (a local path or a Hub repo id) back into our class, as a 3-channel model.

    Without the key mapping `from_pretrained` would report every encoder weight missing and initialise it at
    random; without our own config it would keep the ViT's `model_type`.
    """
    config = MnistViTConfig(**shared_settings(ViTConfig.from_pretrained(path)), num_channels=3)
    return MnistViTForImageClassification.from_pretrained(path, config=config, key_mapping=VIT_CHECKPOINT_KEY_MAPPING)


__all__ = ["export_to_vit", "load_vit_export"]
