"""`leadscore check-model --events FILE.jsonl`: score events through a model, no services.

One JSON object per line, the fields of an input record (DESIGN §3) plus `type`: `click`,
`visit`, `form` or `call`. `occurred_at` is epoch milliseconds or an ISO 8601 time;
`event_id` defaults to the line number. Each line is validated as the worker would.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from leadscore.codec import InputDecoder, encode_record
from leadscore.durations import DAY_MS
from leadscore.errors import ConfigError, InvalidEvent
from leadscore.events import ProfileKey
from leadscore.model import Model
from leadscore.scoring.outputs import ScoreChanged, StageTransitioned
from leadscore.scoring.score import score
from leadscore.scoring.state import LeadState
from leadscore.scoring.timeline import lead_facts

RECORD_TYPES = {"click": "Click", "visit": "Visit", "form": "FormSubmission", "call": "Call"}
YEARS_AHEAD_MS = 100 * 365 * DAY_MS  # a dry run accepts any date


def dry_run(path: Path, model: Model) -> Iterator[str]:
    """Lines describing what each event did, then every profile's final state."""
    states: dict[ProfileKey, LeadState] = {}
    decoders = {
        t: InputDecoder(rt, max_clock_skew_ms=YEARS_AHEAD_MS) for t, rt in RECORD_TYPES.items()
    }
    try:
        lines = path.read_text("utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            kind, record = _record(line, number)
            event = decoders[kind](encode_record(RECORD_TYPES[kind], record))
        except (ValueError, TypeError, KeyError, InvalidEvent) as exc:
            yield f"line {number}: rejected: {exc}"
            continue
        profile = event.profile_key
        result = score(profile, states.get(profile), [event], model)
        states[profile] = result.state
        if result.duplicates:
            yield f"line {number}: {profile.id}: duplicate event id, ignored"
        for output in result.outputs:
            if isinstance(output, StageTransitioned):
                yield (
                    f"line {number}: {profile.id}: stage {output.from_stage or '-'} -> "
                    f"{output.to_stage} ({output.reason}: {output.explanation})"
                )
            elif isinstance(output, ScoreChanged):
                reasons = ", ".join(f"{r.rule} {r.points:+.1f}" for r in output.reasons)
                reasons += "".join(
                    f"; {c.name} {c.value:.1f} ({c.delta:+.1f})" for c in output.categories
                )
                yield (
                    f"line {number}: {profile.id}: total {output.total:.1f} "
                    f"({output.delta:+.1f}: {reasons}) grade {output.grade}"
                )
    yield f"{len(states)} profile(s):"
    for profile, state in sorted(states.items()):
        facts, _ = lead_facts(state, model)
        tags = ", ".join(sorted(facts.tags)) or "-"
        categories = "".join(f", {n} {v:.1f}" for n, v in sorted(facts.categories.items()))
        yield (
            f"  {profile.kind} {profile.id}: total {facts.total:.1f} "
            f"(fit {facts.fit:.1f}, engagement {facts.engagement:.1f}{categories}) grade "
            f"{model.grade(facts.fit, facts.engagement)} stage {state.stage} tags {tags}"
        )


def _record(line: str, number: int) -> tuple[str, dict[str, Any]]:
    doc = json.loads(line)
    if not isinstance(doc, dict):
        raise ValueError("expected a JSON object")
    kind = str(doc.pop("type", ""))
    if kind not in RECORD_TYPES:
        raise ValueError(f"type must be one of {', '.join(RECORD_TYPES)}, got {kind!r}")
    doc.setdefault("event_id", f"line-{number}")
    at = doc.get("occurred_at")
    if isinstance(at, str):
        doc["occurred_at"] = round(datetime.fromisoformat(at).timestamp() * 1000)
    for name in ("lead_id", "anonymous_id", "source", "context"):
        doc.setdefault(name, None)
    return kind, doc
