"""The nets, their training and their checkpoints.

Importing `models` registers the built-in nets, so `create_model("resnet")` works after
`from models import create_model`.
"""
from models.registry import create_model, model_class, model_names, register_model
from models import nets  # noqa: F401  (registers lenet, minivgg, resnet)

__all__ = ["create_model", "model_class", "model_names", "register_model"]
