"""pktpath benchmarks: start-up time, memory, and the throughput cost of always-on drop counting.

Run as root from the repository root: `make bench` (or `python -m bench`; `--quick` for a smoke
run, `--only startup|throughput` for one part).  docs/benchmarks.md explains every number.
"""
