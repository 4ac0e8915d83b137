"""`leadscore check-model --events`: events scored through a model, without services."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from leadscore.cli import main

EVENTS = Path(__file__).parents[1] / "models" / "events.jsonl"


def test_check_model_dry_runs_events_and_rejects_bad_lines() -> None:
    result = CliRunner().invoke(main, ["check-model", "--events", str(EVENTS)])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "model b2b-2: valid" in out
    assert (
        "line 2: ann: stage visitor -> lead (progressed: requests 1 >= 1 and fit 25 >= 15)" in out
    )
    assert "line 3: ann: stage lead -> active_lead (progressed: requests 1 >= 1" in out
    assert "line 4: bob: stage - -> disqualified (first_event: has tag job_seeker)" in out
    assert "line 5: rejected:" in out
    assert "line 6: rejected: type must be one of click, visit, form, call" in out
    assert "lead ann: total 70.9 (fit 25.0, engagement 45.9) grade A2 stage active_lead" in out


def test_check_model_rejects_a_broken_model_with_its_key_path(tmp_path: Path) -> None:
    broken = tmp_path / "model.yaml"
    broken.write_text("version: x\nengagement: {half_life_days: -1, rules: []}\n")
    result = CliRunner().invoke(main, ["check-model", str(broken)])
    assert result.exit_code == 1
    assert "engagement.half_life_days: must be greater than 0" in result.output


def test_the_worker_refuses_to_start_with_a_broken_model(tmp_path: Path) -> None:
    broken = tmp_path / "model.yaml"
    broken.write_text(
        EVENTS.with_name("simple.yaml").read_text().replace("type: click", "type: email")
    )
    result = CliRunner().invoke(main, ["run", "--model", str(broken), "--metrics-port", "0"])
    assert result.exit_code == 2
    assert "engagement.rules[0].when.type: 'email' is not one of" in result.output
