"""Model loading: the bundled model is valid; each mistake names its key path."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from leadscore.errors import ModelError
from leadscore.model import default_model, load_model, parse_model
from leadscore.scoring.events import EventType

BUNDLED = yaml.safe_load(
    (Path(__file__).parents[2] / "src/leadscore/model/default.yaml").read_text()
)


def test_the_bundled_model_loads() -> None:
    model = default_model()
    assert model.version == "builtin-1"
    assert model.points[EventType.CALL] == 20
    assert [s.name for s in model.stages] == ["visitor", "contact", "lead", "active_lead"]
    assert model.grade(15, 60) == "A1"
    assert model.grade(0, 0) == "D4"
    assert model.stage(34.9).name == "contact"
    assert model.stage(35).name == "lead"


def test_a_model_file_is_read_from_disk(tmp_path: Path) -> None:
    document = copy.deepcopy(BUNDLED)
    document["version"] = "custom-7"
    path = tmp_path / "model.yaml"
    path.write_text(yaml.safe_dump(document))
    assert load_model(path).version == "custom-7"


def _with(change: Any) -> dict[str, Any]:
    document = copy.deepcopy(BUNDLED)
    change(document)
    return document


@pytest.mark.parametrize(
    ("change", "path"),
    [
        (lambda d: d.pop("version"), "version"),
        (lambda d: d["engagement"].update(half_life_days=0), "engagement.half_life_days"),
        (lambda d: d["engagement"]["points"].update(email=3), "engagement.points.email"),
        (lambda d: d["engagement"]["points"].update(click="two"), "engagement.points.click"),
        (lambda d: d["fit"]["attributes"].update(company=None), "fit.attributes.company"),
        (lambda d: d["grades"]["fit"].pop("B"), "grades.fit"),
        (lambda d: d["grades"]["engagement"].update({"2": 80}), "grades.engagement.2"),
        (lambda d: d["stages"][2].update(min_total=1), "stages[2].min_total"),
        (lambda d: d["stages"][1].update(name="visitor"), "stages[1].name"),
        (lambda d: d.update(stages=[]), "stages"),
        (lambda d: d.update(colour="blue"), "colour"),
        (lambda d: d.update(contact_allowed_by_default="yes"), "contact_allowed_by_default"),
    ],
)
def test_a_mistake_names_its_key_path(change: Any, path: str) -> None:
    with pytest.raises(ModelError) as caught:
        parse_model(_with(change), source="m.yaml")
    assert f"m.yaml: {path}:" in str(caught.value)


def test_unreadable_and_invalid_yaml_files_are_reported(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="cannot read"):
        load_model(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("stages: [unclosed")
    with pytest.raises(ModelError, match="not valid YAML"):
        load_model(bad)
