"""What the acceptor and the workers share: the language they speak.

RESP (:mod:`.resp`), Redis's error strings (:mod:`.errors`), argument
parsing (:mod:`.args`), glob matching (:mod:`.glob`), key routing
(:mod:`.router`), the command table and its docs (:mod:`.commands`,
:mod:`.command_docs`), the frames and messages on the pipes
(:mod:`.wire`) and the cross-shard decisions file (:mod:`.decisions`).

Nothing in this package imports anything else from shardkv.
"""
