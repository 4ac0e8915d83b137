"""Certificates and SCRAM users for testing Kafka's TLS and SASL for real.

`openssl` makes a throw-away CA, a server certificate for 127.0.0.1/localhost and a client
certificate; `secure_kafka()` starts Apache Kafka with an `SSL` listener (client
certificate required) and a `SASL_SSL` listener (SCRAM-SHA-512), users created at format.
"""

from __future__ import annotations

import contextlib
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.kafka.apache import ApacheKafka, apache_kafka

SCRAM_LOGIN = "org.apache.kafka.common.security.scram.ScramLoginModule required;"


@dataclass(frozen=True)
class Certificates:
    ca: Path
    server_keystore: Path  # private key + certificate, PEM
    client_certificate: Path
    client_key: Path


@dataclass(frozen=True)
class SecureKafka:
    broker: ApacheKafka
    certificates: Certificates
    username: str
    password: str

    @property
    def plaintext(self) -> str:
        return self.broker.bootstrap_servers

    @property
    def ssl(self) -> str:
        return self.broker.listeners["SSL"]

    @property
    def sasl_ssl(self) -> str:
        return self.broker.listeners["SASL_SSL"]


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def make_certificates(directory: Path) -> Certificates:
    d = directory
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=leadscore test CA",
        "-keyout",
        str(d / "ca.key"),
        "-out",
        str(d / "ca.pem"),
    )
    for name, subject, extension in (
        ("server", "/CN=localhost", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
        ("client", "/CN=leadscore-worker", "extendedKeyUsage=clientAuth"),
    ):
        _openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            subject,
            "-keyout",
            str(d / f"{name}.key"),
            "-out",
            str(d / f"{name}.csr"),
        )
        (d / f"{name}.ext").write_text(extension + "\n")
        _openssl(
            "x509",
            "-req",
            "-in",
            str(d / f"{name}.csr"),
            "-CA",
            str(d / "ca.pem"),
            "-CAkey",
            str(d / "ca.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            str(d / f"{name}.ext"),
            "-out",
            str(d / f"{name}.pem"),
        )
    keystore = d / "server-keystore.pem"
    keystore.write_text((d / "server.key").read_text() + (d / "server.pem").read_text())
    return Certificates(d / "ca.pem", keystore, d / "client.pem", d / "client.key")


@contextlib.contextmanager
def secure_kafka(directory: Path) -> Iterator[SecureKafka]:
    """Apache Kafka with PLAINTEXT (for the test's own clients), SSL and SASL_SSL listeners."""
    certificates = make_certificates(directory)
    username, password = "leadscore-worker", secrets.token_urlsafe(16)
    properties = {
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(certificates.server_keystore),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(certificates.ca),
        "listener.name.ssl.ssl.client.auth": "required",
        "sasl.enabled.mechanisms": "SCRAM-SHA-512",
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": SCRAM_LOGIN,
    }
    with apache_kafka(
        extra_listeners={"SSL": "SSL", "SASL_SSL": "SASL_SSL"},
        extra_properties=properties,
        format_args=["--add-scram", f"SCRAM-SHA-512=[name={username},password={password}]"],
    ) as broker:
        yield SecureKafka(broker, certificates, username, password)
