"""The model zoo: SpikingJelly SNNs (SEW-ResNet, plain SEW nets, spiking VGG), their ANN twins,
and the ANNs snnprune prunes (torchvision ResNet/MobileNet V2, MobileNet V1, CIFAR ResNet).

Build any of them by name::

    >>> from snnprune.models import create_model, list_models
    >>> net = create_model("sew_digits", T=4)          # a SpikingNet
    >>> twin = create_model("sew_digits", twin=True)   # the same net with ReLUs ("sew_digits_ann")

Importing this package registers every model.
"""

from . import cifar_resnet, mobilenet_v1, sew_resnet, sew_small, spiking_vgg, torchvision_nets  # noqa: F401 (register)
from .encoders import DirectEncoder, PoissonEncoder
from .neurons import make_neuron, neuron_spec
from .registry import ModelEntry, create_model, list_models, model_entry, register_model, unregister_model
from .spiking_net import SpikingNet
from .twin import ANNTwin, ann_twin

__all__ = [
    "create_model", "list_models", "model_entry", "register_model", "unregister_model", "ModelEntry",
    "SpikingNet", "ANNTwin", "ann_twin", "DirectEncoder", "PoissonEncoder", "make_neuron", "neuron_spec",
]
