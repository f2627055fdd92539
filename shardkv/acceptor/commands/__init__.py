"""The commands the acceptor answers itself, one module per Redis group.

:mod:`shardkv.acceptor.wiring` binds each to its row of the command table.
"""
