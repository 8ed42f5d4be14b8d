"""Configuration of the MNIST Vision Transformer.

The defaults are the model the project started from: 28x28 grayscale digits cut into 7x7 patches
(16 patches + a CLS token), hidden size 128, 4 pre-norm layers of 4 heads, MLP 512, 10 classes.
"""

from typing import Literal

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig


@strict
class MnistViTConfig(PreTrainedConfig):
    r"""
    image_size (`int`, defaults to 28): height and width of the (square) input image.
    patch_size (`int`, defaults to 7): height and width of each patch; must divide `image_size`.
    num_channels (`int`, defaults to 1): 1 for grayscale input, 3 for RGB.
    hidden_size, num_hidden_layers, num_attention_heads, intermediate_size: encoder size.
    hidden_act (`str`, defaults to `"gelu"`): activation of the MLP.
    hidden_dropout_prob, attention_probs_dropout_prob: dropout after each sub-layer and on attention weights.
    initializer_range (`float`, defaults to 0.02): std of the truncated normal used to initialise weights.
    layer_norm_eps (`float`, defaults to 1e-12): epsilon of every LayerNorm (as transformers' ViT).
    qkv_bias (`bool`, defaults to `True`): whether the query, key and value projections have a bias.

    Example:

    ```python
    >>> from mnist_vit import MnistViTConfig, MnistViTForImageClassification
    >>> model = MnistViTForImageClassification(MnistViTConfig(patch_size=4))
    ```
    """

    model_type = "mnist_vit"

    image_size: int = 28
    patch_size: int = 7
    num_channels: int = 1
    hidden_size: int = 128
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    intermediate_size: int = 512
    hidden_act: str = "gelu"
    hidden_dropout_prob: float | int = 0.0
    attention_probs_dropout_prob: float | int = 0.0
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    qkv_bias: bool = True
    problem_type: Literal["regression", "single_label_classification", "multi_label_classification"] | None = (
        "single_label_classification"
    )

    def __post_init__(self, **kwargs):
        if self.id2label is None and kwargs.get("num_labels") is None:
            self.id2label = {i: str(i) for i in range(10)}
            self.label2id = {str(i): i for i in range(10)}
        super().__post_init__(**kwargs)
        # `@strict` runs this again but wraps its error; calling it here first gives users a plain ValueError.
        self.validate_architecture()

    def validate_architecture(self):
        """Part of `@strict` validation: runs on creation, on loading and before saving."""
        sizes = ("image_size", "patch_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")
        for name in sizes:
            if getattr(self, name) <= 0:
                raise ValueError(f"`{name}` must be a positive integer, got {getattr(self, name)}.")
        if self.image_size % self.patch_size != 0:
            raise ValueError(
                f"`image_size` ({self.image_size}) must be divisible by `patch_size` ({self.patch_size}): "
                f"choose a patch size that divides it, e.g. 4, 7 or 14 for 28x28 images."
            )
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"`hidden_size` ({self.hidden_size}) must be divisible by `num_attention_heads` "
                f"({self.num_attention_heads}): each head gets hidden_size / num_attention_heads dimensions."
            )
        if self.num_channels not in (1, 3):
            raise ValueError(f"`num_channels` must be 1 (grayscale) or 3 (RGB), got {self.num_channels}.")


__all__ = ["MnistViTConfig"]
