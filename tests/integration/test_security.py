"""TLS and SASL/SCRAM against Apache Kafka, with certificates and users made for the test."""

from __future__ import annotations

import dataclasses
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from leadscore.cli import main
from leadscore.settings import KafkaSettings, Secret
from tests.integration.conftest import (
    Env,
    Services,
    isolated_env,
    worker_environment,
    worker_process,
)
from tests.kafka import apache
from tests.kafka.security import SecureKafka, secure_kafka
from tests.records import encoded


@pytest.fixture(scope="session")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureKafka]:
    if not apache.available():
        pytest.skip("TLS and SASL are tested on Apache Kafka, which needs java and mvn")
    with secure_kafka(tmp_path_factory.mktemp("tls")) as broker:
        yield broker


@pytest.fixture
def secure_env(secure: SecureKafka, services: Services) -> Iterator[Env]:
    """Topics on the secure broker (made over its PLAINTEXT listener) and the session Redis."""
    with isolated_env(Services(secure.plaintext, services.redis_url, "secure")) as e:
        yield e


def connect(env: Env, **security: object) -> KafkaSettings:
    base = env.settings().kafka
    return dataclasses.replace(base, **security)  # type: ignore[arg-type]


def scores_for(env: Env, lead: str) -> None:
    env.produce([(env.topic("forms"), lead.encode(), encoded("FormSubmission", lead))])
    outputs = env.consume("scores", 2)
    assert [m.key() for m in outputs] == [lead.encode()] * 2


def test_the_worker_scores_over_sasl_scram_on_tls(secure: SecureKafka, secure_env: Env) -> None:
    kafka = connect(
        secure_env,
        bootstrap_servers=secure.sasl_ssl,
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username=secure.username,
        sasl_password=Secret(secure.password),
        ssl_ca_location=str(secure.certificates.ca),
    )
    secure_env.start_worker(kafka=kafka)
    scores_for(secure_env, "tls-lead-1")


def test_the_worker_scores_over_tls_with_a_client_certificate(
    secure: SecureKafka, secure_env: Env
) -> None:
    kafka = connect(
        secure_env,
        bootstrap_servers=secure.ssl,
        security_protocol="SSL",
        ssl_ca_location=str(secure.certificates.ca),
        ssl_certificate_location=str(secure.certificates.client_certificate),
        ssl_key_location=str(secure.certificates.client_key),
    )
    secure_env.start_worker(kafka=kafka)
    scores_for(secure_env, "tls-lead-2")


def test_the_password_never_appears_in_logs_help_or_errors(
    secure: SecureKafka, secure_env: Env, tmp_path: Path
) -> None:
    password_file = tmp_path / "password"
    password_file.write_text(secure.password + "\n")
    environment = worker_environment(
        secure_env,
        bootstrap_servers=secure.sasl_ssl,
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username=secure.username,
        sasl_password_file=str(password_file),
        ssl_ca_location=str(secure.certificates.ca),
        log_level="DEBUG",
        kafka_options="session.timeout.ms=6000 debug=security,broker",
    )
    process = worker_process(environment)
    try:
        scores_for(secure_env, "tls-lead-3")  # it did authenticate with the file's password
        time.sleep(1)
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, output
    assert "SASL" in output  # the debug log did talk about authentication
    assert secure.password not in output

    # a wrong password: the worker never becomes ready, and says nothing of the password
    wrong = {
        **environment,
        "LEADSCORE_SASL_PASSWORD": "Wr0ng-Pa55word",
        "LEADSCORE_LOG_LEVEL": "INFO",
        "LEADSCORE_SASL_PASSWORD_FILE": "",
    }
    process = worker_process(wrong)
    time.sleep(8)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=30)
    assert "Authentication failed" in output or "SASL authentication error" in output, output
    assert "Wr0ng-Pa55word" not in output

    runner = CliRunner(env={"LEADSCORE_SASL_PASSWORD": "Hunter2-secret"})
    help_text = runner.invoke(main, ["run", "--help"], terminal_width=200).output
    assert "LEADSCORE_SASL_PASSWORD" in help_text
    assert "Hunter2-secret" not in help_text
    error = runner.invoke(
        main, ["run", "--sasl-password", "Hunter2-secret", "--input-topics", "nope"]
    )
    assert error.exit_code == 2
    assert "Hunter2-secret" not in error.output
