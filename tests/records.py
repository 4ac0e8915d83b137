"""Builders of input records for tests: plain dicts of the bundled schemas."""

from __future__ import annotations

import time
import uuid
from typing import Any

from leadscore.codec import encode_record


def now_ms() -> int:
    return int(time.time() * 1000)


def record(record_type: str, lead_id: str | None = None, **fields: Any) -> dict[str, Any]:
    """A valid record of `record_type` with sensible defaults; `fields` override them."""
    base: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "occurred_at": now_ms(),
        "lead_id": lead_id,
        "anonymous_id": None if lead_id else "anon-1",
        "source": {"channel": "organic_search", "campaign": None, "medium": None, "referrer": None},
        "context": {"user_agent": "Mozilla/5.0", "ip": "192.0.2.1", "device": "DESKTOP"},
        "traits": {},
    }
    per_type: dict[str, dict[str, Any]] = {
        "Click": {"url": "https://www.example.com/ad", "target_url": None, "ad_id": "ad-1"},
        "Visit": {
            "url": "https://www.example.com/pricing",
            "title": "Pricing",
            "session_id": "s-1",
            "duration_ms": 30_000,
        },
        "FormSubmission": {
            "form_id": "demo-request",
            "url": "https://www.example.com/demo",
            "fields": {"company": "Acme"},
            "fill_duration_ms": 40_000,
            "completed_by": "SELF",
            "consent": {"marketing": True, "contact": True},
        },
        "Call": {
            "call_id": "c-1",
            "direction": "INBOUND",
            "tracking_number": "+15550100",
            "duration_s": 240,
            "answered": True,
            "outcome": None,
        },
    }
    return {**base, **per_type[record_type], **fields}


def encoded(record_type: str, lead_id: str | None = None, **fields: Any) -> bytes:
    return encode_record(record_type, record(record_type, lead_id, **fields))
