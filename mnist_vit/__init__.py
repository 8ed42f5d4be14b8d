"""mnist-vit: a small Vision Transformer for handwritten digits, as a Hugging Face Transformers model.

Importing the package registers its classes with the Auto classes (so `AutoModelForImageClassification`
and `AutoImageProcessor` load local folders of this model) and for remote code (so `save_pretrained`
copies the code and writes `auto_map`, and a Hub repo loads with `trust_remote_code=True`).
"""

from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoModelForImageClassification

from .configuration_mnist_vit import MnistViTConfig
from .image_processing_mnist_vit import MnistViTImageProcessor
from .modeling_mnist_vit import MnistViTForImageClassification, MnistViTModel, MnistViTPreTrainedModel

AutoConfig.register(MnistViTConfig.model_type, MnistViTConfig, exist_ok=True)
AutoModel.register(MnistViTConfig, MnistViTModel, exist_ok=True)
AutoModelForImageClassification.register(MnistViTConfig, MnistViTForImageClassification, exist_ok=True)
AutoImageProcessor.register(MnistViTConfig, image_processor_classes={"pil": MnistViTImageProcessor}, exist_ok=True)

MnistViTConfig.register_for_auto_class()
MnistViTModel.register_for_auto_class("AutoModel")
MnistViTForImageClassification.register_for_auto_class("AutoModelForImageClassification")
MnistViTImageProcessor.register_for_auto_class("AutoImageProcessor")

__all__ = [
    "MnistViTConfig",
    "MnistViTForImageClassification",
    "MnistViTImageProcessor",
    "MnistViTModel",
    "MnistViTPreTrainedModel",
]
