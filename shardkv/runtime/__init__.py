"""What every shardkv process needs, apart from the protocol.

Settings (:mod:`.config`, :mod:`.config_params`), per-command statistics
(:mod:`.cmdstats`), the process title, the parent-death watch, GC tuning
and fault points for tests.  Imports only :mod:`shardkv.protocol`.
"""
