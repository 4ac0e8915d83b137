"""The scoring model: what earns points, how fast they decay, grades and stages (pure)."""

from leadscore.model.load import default_model, load_model, parse_model
from leadscore.model.types import GradeBands, Model, Stage

__all__ = ["GradeBands", "Model", "Stage", "default_model", "load_model", "parse_model"]
