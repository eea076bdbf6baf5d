"""Decode benchmark: OTLP trace, log and metric requests to Arrow, one core.

    .venv/bin/python -m tests.bench.decode_otlp [--runs 400]

Prints the median items/s of the trace decoders on the ingest benchmark's 1,000-span request,
of the protobuf log decoder on 1,000 log records (10 attributes, a ~100-byte body), and of the
metric decoders on `tests.metrics.synthetic_request`'s 1,000 data points (sums, gauges,
histograms and exponential histograms, 4-5 attributes a point, an exemplar on one in five).
Asserts nothing.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.bench.ingest_otlp import SPANS_PER_REQUEST, build_logs_request, build_request
from tests.collector.otlp_values import otlp_json
from tests.metrics import metrics_json, synthetic_request
from vigil.collector.decode.otlp_logs import decode_logs_protobuf
from vigil.collector.decode.otlp_metrics import decode_metrics_json, decode_metrics_protobuf
from vigil.collector.decode.otlp_traces import decode_traces_json, decode_traces_protobuf
from vigil.types import DecodeResult


def to_otlp_json(body: bytes) -> bytes:
    """OTLP/JSON of a protobuf trace request, ids re-encoded as hex as OTLP requires."""
    return otlp_json(ExportTraceServiceRequest.FromString(body), enum_names=True)


def median_rate(
    decode: Callable[[bytes], DecodeResult], body: bytes, runs: int, items: int = SPANS_PER_REQUEST
) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        decode(body)
        times.append(time.perf_counter() - started)
    return items / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=400)
    args = parser.parse_args()
    body = build_request(random.Random(1))
    json_body = to_otlp_json(body)
    print(f"traces protobuf: {median_rate(decode_traces_protobuf, body, args.runs):,.0f} spans/s")
    print(f"traces json:     {median_rate(decode_traces_json, json_body, max(args.runs // 10, 5)):,.0f} spans/s")
    logs_body = build_logs_request(random.Random(2))
    print(f"logs protobuf: {median_rate(decode_logs_protobuf, logs_body, args.runs):,.0f} records/s")
    metrics = synthetic_request(points=1000)
    metrics_body, metrics_json_body = metrics.SerializeToString(), metrics_json(metrics)
    rate = median_rate(decode_metrics_protobuf, metrics_body, args.runs, 1000)
    print(f"metrics protobuf: {rate:,.0f} data points/s")
    rate = median_rate(decode_metrics_json, metrics_json_body, max(args.runs // 10, 5), 1000)
    print(f"metrics json:     {rate:,.0f} data points/s")


if __name__ == "__main__":
    main()
