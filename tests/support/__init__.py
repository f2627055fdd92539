"""Test tooling shared by the tests and the benchmarks (which import it; the
tests never import ``benchmarks``, and ``shardkv`` imports neither):

* ``resp``: the one RESP client (its own encoder and reply reader);
* ``servers``: start and stop shardkv, redis-server or another server on a
  free port, by pid;
* ``rawsocket``: send exact bytes, read what comes back until the server is quiet;
* ``placement``: key names that land on chosen shards;
* ``history``: checks of concurrent histories (linearizability, atomic reads, totals).
"""
