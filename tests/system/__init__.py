"""Processes, crashes, persistence across restarts, fault injection, soak, the benchmark command."""
