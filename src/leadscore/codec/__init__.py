"""Avro decoding of input records and encoding of output records."""

from leadscore.codec.avro import InputDecoder, OutputEncoder, decode_output, encode_record
from leadscore.codec.schemas import INPUT_TYPES, RECORD_EVENT_TYPES, schema

__all__ = [
    "INPUT_TYPES",
    "RECORD_EVENT_TYPES",
    "InputDecoder",
    "OutputEncoder",
    "decode_output",
    "encode_record",
    "schema",
]
