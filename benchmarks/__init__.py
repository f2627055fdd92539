"""Benchmark harness for shardkv: throughput, CPU, memory and scaling runs."""
