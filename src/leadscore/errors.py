"""One exception tree for the whole worker: every layer raises a subclass of LeadscoreError."""

from __future__ import annotations


class LeadscoreError(Exception):
    """Root of every error leadscore raises on purpose."""


class ConfigError(LeadscoreError):
    """A setting is missing or malformed; the worker refuses to start."""


class ModelError(ConfigError):
    """The scoring model file is invalid; the message names the key path."""


class InvalidEvent(LeadscoreError):
    """An input message cannot be scored; it goes to the dead-letter topic.

    `reason` is the short code written to the `leadscore-error-reason` header.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class DecodeError(InvalidEvent):
    """The bytes are not a valid record of the topic's schema."""

    def __init__(self, message: str) -> None:
        super().__init__("undecodable", message)


class KafkaUnavailable(LeadscoreError):
    """The broker cannot be reached or refused a request that may succeed later."""


class KafkaFatal(LeadscoreError):
    """The Kafka client is in a state it cannot recover from (fenced, misconfigured)."""


class KafkaRefused(KafkaFatal):
    """The broker refused the credentials or the client's access (authentication, TLS)."""


class PartitionsLost(LeadscoreError):
    """The batch's partitions now belong to another worker, which will replay them."""


class DeliveryFailed(LeadscoreError):
    """An output or dead letter was not acknowledged; offsets must not be committed."""


class StateUnavailable(LeadscoreError):
    """Redis cannot be reached; the worker pauses and retries."""


class StateRefused(LeadscoreError):
    """Redis refused the credentials or a command; retrying will not help."""


class StateLost(LeadscoreError):
    """Redis lacks state the committed offsets say was written (it restarted empty, or
    was restored from an old snapshot): going on would score those leads from zero."""


class StartupFailed(LeadscoreError):
    """A service the worker needs was not usable within the start-up timeout.

    `problems` holds one line per problem, each naming the setting to check."""

    def __init__(self, problems: list[str], waited_s: float) -> None:
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"cannot start (checked for {waited_s:.0f} s):\n{lines}")
        self.problems = problems


class SchemaRegistryUnavailable(KafkaUnavailable):
    """The schema registry cannot be reached or failed a request that may succeed later;
    handled like a broker outage: the worker holds the batch and retries."""


class SchemaRegistryRefused(LeadscoreError):
    """The schema registry refused the credentials or a request; retrying will not help."""
