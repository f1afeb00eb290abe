#!/usr/bin/python3
"""Companion of bench_key.c: the Python baseline of a request's parse and keys, json.loads of the
request and hashlib.sha256 (hex) of each canonical document the C side hashes for it. The C
benchmark writes the request and the documents to files, then asks for one timed round at a time
on stdin ("N": run N requests), so the two alternate on a shared machine; each answer is the
round's nanoseconds per request.

usage: bench_key_ref.py REQUEST_FILE DOCUMENT_FILE..."""
import hashlib
import json
import sys
import time


def main():
    with open(sys.argv[1], "rb") as f:
        request = f.read()
    docs = []
    for path in sys.argv[2:]:
        with open(path, "rb") as f:
            docs.append(f.read())
    loads, sha256 = json.loads, hashlib.sha256
    for line in sys.stdin:
        n = int(line)
        t0 = time.perf_counter_ns()
        for _ in range(n):
            loads(request)
            for d in docs:
                sha256(d).hexdigest()
        print((time.perf_counter_ns() - t0) / n, flush=True)


if __name__ == "__main__":
    main()
