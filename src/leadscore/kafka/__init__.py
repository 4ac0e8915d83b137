"""Thin adapters around confluent-kafka: the only code that touches its types."""
