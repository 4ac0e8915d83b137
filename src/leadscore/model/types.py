"""The validated scoring model as immutable values; the scoring core reads only these."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from leadscore.scoring.events import EventType


@dataclass(frozen=True, slots=True)
class Stage:
    """A lifecycle stage entered when the total reaches `min_total`."""

    name: str
    min_total: float


@dataclass(frozen=True, slots=True)
class GradeBands:
    """Lowest value for each band, best band first; below every band is the `fallback`."""

    bands: tuple[tuple[str, float], ...]
    fallback: str

    def band(self, value: float) -> str:
        """The first band whose lower bound `value` reaches."""
        for name, lowest in self.bands:
            if value >= lowest:
                return name
        return self.fallback


@dataclass(frozen=True, slots=True)
class Model:
    """A scoring model. `half_life_ms` is the engagement half-life in event time."""

    version: str
    half_life_ms: int
    points: Mapping[EventType, float]
    fit_attributes: Mapping[str, float]
    fit_grades: GradeBands
    engagement_grades: GradeBands
    stages: tuple[Stage, ...]
    contact_allowed_by_default: bool = False

    def fit(self, attributes: Mapping[str, str]) -> float:
        """Fit is a pure function of the lead's known attributes."""
        return sum((p for name, p in self.fit_attributes.items() if attributes.get(name)), 0.0)

    def grade(self, fit: float, engagement: float) -> str:
        """Combined grade: fit band letter then engagement band digit, e.g. `B2`."""
        return self.fit_grades.band(fit) + self.engagement_grades.band(engagement)

    def stage(self, total: float) -> Stage:
        """The last stage whose threshold `total` reaches (stages may move backwards)."""
        current = self.stages[0]
        for stage in self.stages[1:]:
            if total >= stage.min_total:
                current = stage
        return current
