"""The scoring core and the model import nothing of Kafka, Redis, Avro or Prometheus."""

from __future__ import annotations

import subprocess
import sys

ADAPTERS = ("confluent_kafka", "redis", "fastavro", "prometheus_client")


def test_the_core_is_pure() -> None:
    code = (
        "import sys\n"
        "import leadscore.scoring.score, leadscore.scoring.explain, leadscore.model\n"
        "print(sorted({m.split('.')[0] for m in sys.modules}))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    for adapter in ADAPTERS:
        assert f"'{adapter}'" not in loaded, f"the core imports {adapter}"


def test_the_model_does_not_import_the_scoring_core() -> None:
    """The event types lie below both: the model reads events, the core reads the model."""
    code = (
        "import sys\n"
        "import leadscore.model\n"
        "print(sorted(m for m in sys.modules if m.startswith('leadscore.scoring')))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert loaded.strip() == "[]", loaded
