"""Decode benchmark: OTLP trace requests to Arrow, one core.

    .venv/bin/python -m tests.bench.decode_traces [--runs 400]

Prints the median spans/s of `decode_traces_protobuf` and `decode_traces_json` on the ingest
benchmark's 1,000-span request. Asserts nothing.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable

from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.bench.ingest_traces import SPANS_PER_REQUEST, build_request
from vigil.collector.decode.otlp_traces import decode_traces_json, decode_traces_protobuf
from vigil.types import DecodeResult


def to_otlp_json(body: bytes) -> bytes:
    """OTLP/JSON of a protobuf request: json_format, then ids re-encoded as hex as OTLP requires."""
    import base64
    import json

    document = json_format.MessageToDict(ExportTraceServiceRequest.FromString(body))
    for resource_spans in document.get("resourceSpans", []):
        for scope_spans in resource_spans.get("scopeSpans", []):
            for span in scope_spans.get("spans", []):
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64decode(span[key]).hex()
    return json.dumps(document).encode()


def median_rate(decode: Callable[[bytes], DecodeResult], body: bytes, runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        decode(body)
        times.append(time.perf_counter() - started)
    return SPANS_PER_REQUEST / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=400)
    args = parser.parse_args()
    body = build_request(random.Random(1))
    json_body = to_otlp_json(body)
    print(f"protobuf: {median_rate(decode_traces_protobuf, body, args.runs):,.0f} spans/s")
    print(f"json:     {median_rate(decode_traces_json, json_body, max(args.runs // 10, 5)):,.0f} spans/s")


if __name__ == "__main__":
    main()
