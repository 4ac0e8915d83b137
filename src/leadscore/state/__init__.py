"""The Redis state store: every key, script and round trip to Redis lives here."""
