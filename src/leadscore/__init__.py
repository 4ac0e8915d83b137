"""leadscore: real-time lead scoring from Kafka events, with state in Redis."""

__version__ = "0.1.0"
