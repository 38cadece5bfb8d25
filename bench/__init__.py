"""Benchmarks (`make bench`): figures for the README, never assertions in the test suite."""
