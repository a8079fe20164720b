"""Benchmarks (`make bench`): pipeline wall times and serving latency; results in bench/results/."""
