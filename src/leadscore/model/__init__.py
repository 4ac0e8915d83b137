"""The scoring model: rules, decay, fit, grades and stages, loaded and validated (pure)."""

from leadscore.model.load import default_model, load_model, parse_model
from leadscore.model.types import Category, Fit, FitRule, GradeBands, Model, Rule, Stage

__all__ = [
    "Category",
    "Fit",
    "FitRule",
    "GradeBands",
    "Model",
    "Rule",
    "Stage",
    "default_model",
    "load_model",
    "parse_model",
]
