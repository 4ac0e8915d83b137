"""The dead-letter topic: the input message unchanged, plus headers saying why."""

from __future__ import annotations

from leadscore.kafka.consumer import Message
from leadscore.kafka.producer import Record

MAX_ERROR_MESSAGE = 1000


def dead_letter(message: Message, topic: str, reason: str, error: str) -> Record:
    """The message's key, value and headers, plus `leadscore-error-*` and source headers."""
    headers = [
        *message.headers,
        ("leadscore-error-reason", reason.encode()),
        ("leadscore-error-message", error[:MAX_ERROR_MESSAGE].encode("utf-8", "replace")),
        ("leadscore-source-topic", message.topic.encode()),
        ("leadscore-source-partition", str(message.partition).encode()),
        ("leadscore-source-offset", str(message.offset).encode()),
    ]
    return Record(topic, message.key, message.value, headers)
