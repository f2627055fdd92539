"""Profiling hook for framecost measurements (not part of shardkv):
with SHARDKV_CPROFILE_DIR set, each acceptor and worker process starts
cProfile on SIGWINCH, stops it on SIGURG, and dumps its stats at exit."""

import os

_dir = os.environ.get("SHARDKV_CPROFILE_DIR")
if _dir:
    import cProfile
    import functools
    import signal

    def _wrap(mod_name, role):
        import importlib

        mod = importlib.import_module(mod_name)
        orig = mod.serve

        @functools.wraps(orig)
        def serve(*a, **kw):
            prof = cProfile.Profile()
            signal.signal(signal.SIGWINCH, lambda *_: prof.enable())
            signal.signal(signal.SIGURG, lambda *_: prof.disable())
            try:
                return orig(*a, **kw)
            finally:
                prof.disable()
                prof.dump_stats(os.path.join(_dir, f"{role}-{os.getpid()}.prof"))

        mod.serve = serve

    _wrap("shardkv.acceptor.main", "acceptor")
    _wrap("shardkv.worker.loop", "worker")
