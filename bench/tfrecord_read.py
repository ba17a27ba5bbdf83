"""Read speed of farm.tfrecord / farm.records on a published-layout file (no TensorFlow here).

Writes N synthetic records in the NAS-Bench-101 layout (JSON list + base64 ModelMetrics, ~400 bytes
like nasbench_only108.tfrecord), then times, in this process: raw framing without CRC checks
(the baseline), framing with the numpy CRC32C, the byte-at-a-time reference CRC, and full record
parsing. Prints MB/s and ratios against the baseline. Usage: python3 bench/tfrecord_read.py [N]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

from farm import tfrecord
from farm.nb101_proto import EvaluationData, ModelMetrics
from farm.records import BenchmarkRecord, iter_file, write_file


def main(n: int) -> None:
    evaluations = tuple(EvaluationData(e, 577.1 * e / 54, 0.8, 0.81, 0.79) for e in (0.0, 54.0, 108.0))
    records = [
        BenchmarkRecord(
            f"{i:032x}", 108, "0111100000000100000010000001000001000000100000000",
            "input,conv3x3-bn-relu,conv1x1-bn-relu,maxpool3x3,conv3x3-bn-relu,conv3x3-bn-relu,output",
            ModelMetrics(evaluations, 2694282, 1200.0),
        )
        for i in range(n)
    ]
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "bench.tfrecord")
        write_file(path, records)
        size_mb = os.path.getsize(path) / 1e6
        timings = {}
        start = time.perf_counter()
        assert sum(1 for _ in tfrecord.iter_records(path, check_crc=False)) == n
        timings["framing, no CRC (baseline)"] = time.perf_counter() - start
        start = time.perf_counter()
        assert sum(1 for _ in tfrecord.iter_records(path)) == n
        timings["framing + numpy CRC32C"] = time.perf_counter() - start
        payloads = list(tfrecord.iter_records(path, check_crc=False))[: max(1, n // 20)]
        start = time.perf_counter()
        for p in payloads:
            tfrecord.crc32c_reference(p)
        timings["reference CRC (bytewise), extrapolated"] = (time.perf_counter() - start) * n / len(payloads)
        start = time.perf_counter()
        assert sum(1 for _ in iter_file(path)) == n
        timings["records (CRC + JSON + base64 + proto)"] = time.perf_counter() - start
    base = timings["framing, no CRC (baseline)"]
    print(f"{n} records, {size_mb:.1f} MB")
    for name, seconds in timings.items():
        print(f"{name:42s} {seconds:7.2f} s  {size_mb / seconds:8.1f} MB/s  {n / seconds:10.0f} rec/s  "
              f"x{seconds / base:.1f} of baseline")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
