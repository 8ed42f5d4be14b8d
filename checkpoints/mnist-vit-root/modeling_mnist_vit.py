"""The MNIST Vision Transformer: patch embedding, pre-norm encoder, CLS-token classifier.

Module and parameter names follow transformers' `ViTForImageClassification` exactly, so a trained
model exports to a plain ViT checkpoint by copying tensors (see `export.py`).
"""

from collections.abc import Callable

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutput, ImageClassifierOutput
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.processing_utils import Unpack
from transformers.utils import TransformersKwargs
from transformers.utils.generic import can_return_tuple
from transformers.utils.output_capturing import capture_outputs

from .configuration_mnist_vit import MnistViTConfig


class MnistViTPatchEmbeddings(nn.Module):
    """Cuts the image into non-overlapping patches and projects each to `hidden_size`."""

    def __init__(self, config: MnistViTConfig):
        super().__init__()
        self.projection = nn.Conv2d(
            config.num_channels, config.hidden_size, kernel_size=config.patch_size, stride=config.patch_size
        )

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.projection(pixel_values).flatten(2).transpose(1, 2)  # (B, num_patches, hidden)


class MnistViTEmbeddings(nn.Module):
    """Patch embeddings with a learned CLS token in front and learned position embeddings added."""

    def __init__(self, config: MnistViTConfig):
        super().__init__()
        self.config = config
        num_patches = (config.image_size // config.patch_size) ** 2
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        self.position_embeddings = nn.Parameter(torch.zeros(1, num_patches + 1, config.hidden_size))
        self.patch_embeddings = MnistViTPatchEmbeddings(config)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def check_pixel_values(self, pixel_values: torch.Tensor, interpolate_pos_encoding: bool) -> None:
        config = self.config
        expected = f"(batch_size, {config.num_channels}, {config.image_size}, {config.image_size})"
        if pixel_values.ndim != 4:
            raise ValueError(
                f"`pixel_values` must have shape {expected}, got a {pixel_values.ndim}-d tensor of shape "
                f"{tuple(pixel_values.shape)}. Use the model's image processor to prepare images."
            )
        _, num_channels, height, width = pixel_values.shape
        if num_channels != config.num_channels:
            raise ValueError(
                f"`pixel_values` must have shape {expected}, got {num_channels} channels in "
                f"{tuple(pixel_values.shape)}."
            )
        if interpolate_pos_encoding:
            if height % config.patch_size or width % config.patch_size:
                raise ValueError(
                    f"With `interpolate_pos_encoding=True` the image height and width must be multiples of "
                    f"`patch_size` ({config.patch_size}), got {height}x{width}."
                )
        elif (height, width) != (config.image_size, config.image_size):
            raise ValueError(
                f"`pixel_values` must have shape {expected}, got {height}x{width} images. Resize them, or pass "
                f"`interpolate_pos_encoding=True` to run the model on another size."
            )

    def interpolate_pos_encoding(self, height: int, width: int) -> torch.Tensor:
        """Resizes the learned grid of patch positions (bicubic) so the model runs on other image sizes."""
        grid = self.config.image_size // self.config.patch_size
        new_grid = (height // self.config.patch_size, width // self.config.patch_size)
        if new_grid == (grid, grid):
            return self.position_embeddings
        cls_position, patch_positions = self.position_embeddings[:, :1], self.position_embeddings[:, 1:]
        patch_positions = patch_positions.reshape(1, grid, grid, -1).permute(0, 3, 1, 2)  # (1, hidden, grid, grid)
        patch_positions = nn.functional.interpolate(patch_positions, size=new_grid, mode="bicubic", align_corners=False)
        patch_positions = patch_positions.permute(0, 2, 3, 1).flatten(1, 2)  # (1, new_patches, hidden)
        return torch.cat((cls_position, patch_positions), dim=1)

    def forward(self, pixel_values: torch.Tensor, interpolate_pos_encoding: bool = False) -> torch.Tensor:
        self.check_pixel_values(pixel_values, interpolate_pos_encoding)
        patches = self.patch_embeddings(pixel_values)
        cls_tokens = self.cls_token.expand(patches.shape[0], -1, -1)
        embeddings = torch.cat((cls_tokens, patches), dim=1)  # (B, 1 + num_patches, hidden)
        if interpolate_pos_encoding:
            embeddings = embeddings + self.interpolate_pos_encoding(*pixel_values.shape[-2:])
        else:
            embeddings = embeddings + self.position_embeddings
        return self.dropout(embeddings)


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs: Unpack[TransformersKwargs],
) -> tuple[torch.Tensor, torch.Tensor]:
    attn_weights = torch.matmul(query, key.transpose(2, 3)) * scaling  # (B, heads, T, T)
    if attention_mask is not None:
        attn_weights = attn_weights + attention_mask
    # softmax in fp32 so bf16/fp16 training stays stable
    attn_weights = nn.functional.softmax(attn_weights, dim=-1, dtype=torch.float32).to(query.dtype)
    attn_weights = nn.functional.dropout(attn_weights, p=dropout, training=module.training)
    attn_output = torch.matmul(attn_weights, value).transpose(1, 2).contiguous()  # (B, T, heads, head_dim)
    return attn_output, attn_weights


class MnistViTAttention(nn.Module):
    """Multi-head self-attention through transformers' attention interface (eager, sdpa, flash, flex)."""

    def __init__(self, config: MnistViTConfig):
        super().__init__()
        self.config = config
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.scaling = self.head_dim**-0.5
        self.is_causal = False
        self.q_proj = nn.Linear(config.hidden_size, config.hidden_size, bias=config.qkv_bias)
        self.k_proj = nn.Linear(config.hidden_size, config.hidden_size, bias=config.qkv_bias)
        self.v_proj = nn.Linear(config.hidden_size, config.hidden_size, bias=config.qkv_bias)
        self.o_proj = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(
        self, hidden_states: torch.Tensor, **kwargs: Unpack[TransformersKwargs]
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        input_shape = hidden_states.shape[:-1]
        hidden_shape = (*input_shape, -1, self.head_dim)
        query = self.q_proj(hidden_states).view(hidden_shape).transpose(1, 2)  # (B, heads, T, head_dim)
        key = self.k_proj(hidden_states).view(hidden_shape).transpose(1, 2)
        value = self.v_proj(hidden_states).view(hidden_shape).transpose(1, 2)

        attention_interface: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        attn_output, attn_weights = attention_interface(
            self,
            query,
            key,
            value,
            None,  # every patch attends to every patch: no mask
            dropout=self.config.attention_probs_dropout_prob if self.training else 0.0,
            scaling=self.scaling,
            **kwargs,
        )
        attn_output = attn_output.reshape(*input_shape, -1).contiguous()
        return self.o_proj(attn_output), attn_weights


class MnistViTMLP(nn.Module):
    def __init__(self, config: MnistViTConfig):
        super().__init__()
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.activation_fn = ACT2FN[config.hidden_act]
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.activation_fn(self.fc1(hidden_states)))


class MnistViTLayer(GradientCheckpointingLayer):
    """One pre-norm encoder block: x + attention(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, config: MnistViTConfig):
        super().__init__()
        self.layernorm_before = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attention = MnistViTAttention(config)
        self.layernorm_after = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = MnistViTMLP(config)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: torch.Tensor, **kwargs: Unpack[TransformersKwargs]) -> torch.Tensor:
        attn_output, _ = self.attention(self.layernorm_before(hidden_states), **kwargs)
        hidden_states = hidden_states + self.dropout(attn_output)
        return hidden_states + self.dropout(self.mlp(self.layernorm_after(hidden_states)))


class MnistViTPreTrainedModel(PreTrainedModel):
    config: MnistViTConfig
    base_model_prefix = "vit"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True
    _no_split_modules = ["MnistViTEmbeddings", "MnistViTLayer"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    _can_compile_fullgraph = True
    _can_record_outputs = {"hidden_states": MnistViTLayer, "attentions": MnistViTAttention}

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)  # Linear, Conv2d and LayerNorm, with `initializer_range`
        if isinstance(module, MnistViTEmbeddings):
            init.trunc_normal_(module.cls_token, mean=0.0, std=self.config.initializer_range)
            init.trunc_normal_(module.position_embeddings, mean=0.0, std=self.config.initializer_range)


class MnistViTModel(MnistViTPreTrainedModel):
    """The encoder: returns the normalised hidden state of the CLS token and of every patch."""

    def __init__(self, config: MnistViTConfig):
        super().__init__(config)
        self.embeddings = MnistViTEmbeddings(config)
        self.layers = nn.ModuleList([MnistViTLayer(config) for _ in range(config.num_hidden_layers)])
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.embeddings.patch_embeddings

    @capture_outputs(tie_last_hidden_states=False)
    def forward(
        self,
        pixel_values: torch.Tensor,
        interpolate_pos_encoding: bool = False,
        **kwargs: Unpack[TransformersKwargs],
    ) -> BaseModelOutput:
        # bf16/fp16 weights get fp32 images from the processor: cast here, as transformers' ViT does
        pixel_values = pixel_values.to(self.embeddings.patch_embeddings.projection.weight.dtype)
        hidden_states = self.embeddings(pixel_values, interpolate_pos_encoding=interpolate_pos_encoding)
        for layer in self.layers:
            hidden_states = layer(hidden_states, **kwargs)
        return BaseModelOutput(last_hidden_state=self.layernorm(hidden_states))


class MnistViTForImageClassification(MnistViTPreTrainedModel):
    """The encoder with a linear classifier on the CLS token; `labels` give a cross-entropy loss."""

    def __init__(self, config: MnistViTConfig):
        super().__init__(config)
        self.vit = MnistViTModel(config)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        interpolate_pos_encoding: bool = False,
        **kwargs: Unpack[TransformersKwargs],
    ) -> ImageClassifierOutput:
        # return_dict=True: the head reads fields by name, whatever `config.return_dict` says for its own output
        outputs: BaseModelOutput = self.vit(
            pixel_values, interpolate_pos_encoding=interpolate_pos_encoding, return_dict=True, **kwargs
        )
        logits = self.classifier(outputs.last_hidden_state[:, 0])
        loss = self.loss_function(labels, logits, self.config, **kwargs) if labels is not None else None
        return ImageClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )

    def save_pretrained(self, save_directory, *args, **kwargs) -> None:
        """As `PreTrainedModel.save_pretrained`; with remote code, `auto_map` also names the encoder for
        `AutoModel` (features, `pipeline("image-feature-extraction")`), not only this class."""
        if self._auto_class is not None:
            encoder = f"{__name__.rpartition('.')[2]}.{MnistViTModel.__name__}"
            self.config.auto_map = {**(getattr(self.config, "auto_map", None) or {}), "AutoModel": encoder}
        super().save_pretrained(save_directory, *args, **kwargs)


__all__ = ["MnistViTPreTrainedModel", "MnistViTModel", "MnistViTForImageClassification"]
