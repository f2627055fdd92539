"""The acceptor: the process that owns every client connection.

It parses RESP, answers what it can itself, and routes everything else by
key hash to the workers over their pipes.  It imports
:mod:`shardkv.protocol` and :mod:`shardkv.runtime`, never the workers.

To follow a command from the socket to its reply, read in this order:
``main`` (the process starts), ``wiring`` (what is bound to what),
``server`` (listeners, the end-of-turn flush), ``client`` (one connection:
read, parse, the inline hot path, ordered replies), ``dispatch`` (the
checks and the routing), ``state`` (a client's mode), then where the
command goes: ``commands/`` and the feature modules (answered here),
``shardlink`` (to a worker), ``fanout`` and ``crossshard`` (to several),
and back through ``replies`` (the slots the workers' replies fill).
"""
