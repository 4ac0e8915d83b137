"""Load and validate a model file; every error names the key path that is wrong."""

from __future__ import annotations

import itertools
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from leadscore.errors import ModelError
from leadscore.model.types import GradeBands, Model, Stage
from leadscore.scoring.events import EventType

_MS_PER_DAY = 86_400_000


def default_model() -> Model:
    """The model bundled with the package."""
    text = resources.files("leadscore.model").joinpath("default.yaml").read_text("utf-8")
    return parse_model(yaml.safe_load(text), source="<bundled default model>")


def load_model(path: str | Path | None) -> Model:
    """Read a YAML model file, or the bundled default when `path` is None."""
    if path is None:
        return default_model()
    try:
        text = Path(path).read_text("utf-8")
    except OSError as exc:
        raise ModelError(f"cannot read model file {path}: {exc.strerror}") from exc
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ModelError(f"{path}: not valid YAML: {exc}") from exc
    return parse_model(document, source=str(path))


def parse_model(document: Any, *, source: str = "<model>") -> Model:
    """Validate a parsed YAML document and build the immutable model."""
    root = _mapping(document, source, "the model")
    _only(
        root,
        source,
        {"version", "engagement", "fit", "grades", "stages", "contact_allowed_by_default"},
    )
    version = root.get("version")
    if not isinstance(version, str | int) or str(version) == "":
        raise ModelError(f"{source}: version: required, a non-empty string")

    engagement = _mapping(root.get("engagement"), source, "engagement")
    _only(engagement, source, {"half_life_days", "points"}, "engagement")
    half_life = _number(engagement.get("half_life_days"), source, "engagement.half_life_days")
    if half_life <= 0:
        raise ModelError(f"{source}: engagement.half_life_days: must be greater than 0")
    points_doc = _mapping(engagement.get("points"), source, "engagement.points")
    allowed_types = {t.value for t in EventType}
    _only(points_doc, source, allowed_types, "engagement.points")
    points = {
        EventType(name): _number(value, source, f"engagement.points.{name}")
        for name, value in points_doc.items()
    }

    fit_doc = _mapping(root.get("fit", {"attributes": {}}), source, "fit")
    _only(fit_doc, source, {"attributes"}, "fit")
    attributes = _mapping(fit_doc.get("attributes", {}), source, "fit.attributes")
    fit_attributes = {
        str(name): _number(value, source, f"fit.attributes.{name}")
        for name, value in attributes.items()
    }

    grades = _mapping(root.get("grades"), source, "grades")
    _only(grades, source, {"fit", "engagement"}, "grades")
    fit_grades = _bands(grades.get("fit"), source, "grades.fit", ("A", "B", "C"), "D")
    engagement_grades = _bands(
        grades.get("engagement"), source, "grades.engagement", ("1", "2", "3"), "4"
    )

    stages = _stages(root.get("stages"), source)
    default_contact = root.get("contact_allowed_by_default", False)
    if not isinstance(default_contact, bool):
        raise ModelError(f"{source}: contact_allowed_by_default: must be true or false")
    return Model(
        version=str(version),
        half_life_ms=round(half_life * _MS_PER_DAY),
        points=points,
        fit_attributes=fit_attributes,
        fit_grades=fit_grades,
        engagement_grades=engagement_grades,
        stages=stages,
        contact_allowed_by_default=default_contact,
    )


def _stages(value: Any, source: str) -> tuple[Stage, ...]:
    if not isinstance(value, list) or not value:
        raise ModelError(f"{source}: stages: required, a non-empty list of {{name, min_total}}")
    stages: list[Stage] = []
    for i, item in enumerate(value):
        path = f"stages[{i}]"
        entry = _mapping(item, source, path)
        _only(entry, source, {"name", "min_total"}, path)
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            raise ModelError(f"{source}: {path}.name: required, a non-empty string")
        if any(s.name == name for s in stages):
            raise ModelError(f"{source}: {path}.name: stage {name!r} is declared twice")
        lowest = _number(entry.get("min_total"), source, f"{path}.min_total")
        if stages and lowest <= stages[-1].min_total:
            raise ModelError(
                f"{source}: {path}.min_total: must be greater than the previous stage's "
                f"({stages[-1].min_total:g}); stages are listed from the first"
            )
        stages.append(Stage(name, lowest))
    return tuple(stages)


def _bands(value: Any, source: str, path: str, names: tuple[str, ...], fallback: str) -> GradeBands:
    doc = _mapping(value, source, path)
    doc = {str(k): v for k, v in doc.items()}
    _only(doc, source, set(names), path)
    missing = [n for n in names if n not in doc]
    if missing:
        raise ModelError(f"{source}: {path}: missing band(s) {', '.join(missing)}")
    bands = tuple((n, _number(doc[n], source, f"{path}.{n}")) for n in names)
    for (upper, high), (lower, low) in itertools.pairwise(bands):
        if high <= low:
            raise ModelError(
                f"{source}: {path}.{lower}: must be lower than {path}.{upper} ({high:g})"
            )
    return GradeBands(bands, fallback)


def _mapping(value: Any, source: str, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ModelError(f"{source}: {path}: required, a mapping")
    return value


def _number(value: Any, source: str, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ModelError(f"{source}: {path}: must be a number, got {value!r}")
    return float(value)


def _only(doc: dict[str, Any], source: str, allowed: set[str], path: str = "") -> None:
    for key in doc:
        if str(key) not in allowed:
            where = f"{path}.{key}" if path else str(key)
            raise ModelError(
                f"{source}: {where}: unknown key; allowed here: {', '.join(sorted(allowed))}"
            )
