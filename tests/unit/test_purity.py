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
