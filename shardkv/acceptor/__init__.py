"""The acceptor: the process that owns every client connection.

It parses RESP, answers what it can itself, and routes everything else by
key hash to the workers over their pipes.  It imports
:mod:`shardkv.protocol` and :mod:`shardkv.runtime`, never the workers.
"""
