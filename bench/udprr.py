"""UDP request/response for the latency benchmark (run inside a namespace).

    python bench/udprr.py server PORT
    python bench/udprr.py client DST PORT COUNT INTERVAL

The server answers every datagram with itself until it is stopped; the client sends
COUNT 64-byte requests INTERVAL seconds apart, each after the previous answer (or a
1 s timeout), and prints one JSON line: ``p50_us``, ``p99_us``, ``min_us``, ``lost``.
Unlike ping, whose echo the receiving kernel answers inside the same softirq, the
answer here comes from a process that must be woken first, as with a real service.
"""

from __future__ import annotations

import json
import socket
import statistics
import sys
import time


def server(port: int) -> None:
    """Echo datagrams forever."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", port))
    while True:
        data, addr = s.recvfrom(2048)
        s.sendto(data, addr)


def client(dst: str, port: int, count: int, interval: float) -> dict[str, float]:
    """Round-trip times of ``count`` requests, in µs (percentiles of the answered)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(1.0)
    s.connect((dst, port))
    rtts: list[float] = []
    lost = 0
    for i in range(count):
        payload = i.to_bytes(4, "big") * 16
        t0 = time.perf_counter()
        s.send(payload)
        try:
            while s.recv(2048) != payload:  # a late answer to an earlier request
                pass
            rtts.append((time.perf_counter() - t0) * 1e6)
        except TimeoutError:
            lost += 1
        time.sleep(interval)
    rtts.sort()
    if not rtts:
        return {"p50_us": 0.0, "p99_us": 0.0, "min_us": 0.0, "lost": float(lost)}
    return {"p50_us": statistics.median(rtts),
            "p99_us": rtts[min(len(rtts) - 1, int(len(rtts) * 0.99))],
            "min_us": rtts[0], "lost": float(lost)}


def main(argv: list[str]) -> int:
    """Entry point."""
    if len(argv) == 2 and argv[0] == "server":
        server(int(argv[1]))
    elif len(argv) == 5 and argv[0] == "client":
        out = client(argv[1], int(argv[2]), int(argv[3]), float(argv[4]))
        sys.stdout.write(json.dumps(out) + "\n")
    else:
        sys.stderr.write(__doc__ or "")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
