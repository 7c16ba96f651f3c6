"""Test support shipped with the package: real engines on loopback for tests and benchmarks."""
