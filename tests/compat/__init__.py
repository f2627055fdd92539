"""Differential tests: shardkv against a real redis-server (the ``r`` and ``compare`` fixtures)."""
