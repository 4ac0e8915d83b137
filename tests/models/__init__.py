"""Model files for tests."""

from pathlib import Path

from leadscore.model import Model, load_model

SIMPLE = Path(__file__).with_name("simple.yaml")


def simple_model() -> Model:
    """Points per event type (click 2, visit 1, form 15, call 20), fit 5 per known
    attribute, stages at 0 / 15 / 35 / 60."""
    return load_model(SIMPLE)
