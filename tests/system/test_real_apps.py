"""The Python applications users build on Redis, end to end, with the real
libraries: Celery (kombu's redis broker and the redis result backend),
Dramatiq (RedisBroker, its Lua dispatcher, delayed messages, results),
Huey (RedisHuey, a consumer of its own, scheduled tasks), RQ (a
SimpleWorker in burst mode, results in streams), limits (fixed, moving
and sliding windows over RedisStorage, sync and asyncio), and a job queue
on stream consumer groups (walrus, and redis-py's stream commands).

Each test runs against a real redis-server and against shardkv (4 shards,
``$SHARDKV_TEST_ACCEPTORS`` acceptors) through the ``server`` fixture, and
asserts the same outcome on both, in database 1 (``redis://.../1``) where
the library takes a URL.  Every worker runs in this process, in threads,
is bounded by a count of jobs and a few seconds, and is stopped before the
test ends.  The libraries come with the ``test`` extra (README, "Tested
with", lists the versions last checked).  Celery's and Huey's tests, a
second or two each, are marked slow.
"""

from __future__ import annotations

import asyncio
import datetime
import gc
import threading
import time

import pytest
import redis

celery = pytest.importorskip("celery")
dramatiq = pytest.importorskip("dramatiq")
huey = pytest.importorskip("huey")
rq = pytest.importorskip("rq")
limits = pytest.importorskip("limits")
walrus = pytest.importorskip("walrus")

WITHIN = 10.0  # seconds: the bound on every wait (each workload takes well under one)


def _url(port: int, db: int = 1) -> str:
    return f"redis://127.0.0.1:{port}/{db}"


def _database_0_is_empty(port: int) -> bool:
    with redis.Redis(port=port, db=0) as c:
        return c.dbsize() == 0


def _until(condition, timeout: float = WITHIN) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the workload did not finish in time"
        time.sleep(0.01)


def test_redis_py_lock(server):
    c = redis.Redis(port=server, db=1)
    lock = c.lock("resource", timeout=5, blocking_timeout=0)
    assert lock.acquire()
    assert not c.lock("resource", timeout=5, blocking_timeout=0).acquire()
    assert lock.extend(5) and lock.reacquire()
    lock.release()
    assert c.lock("resource", timeout=5, blocking_timeout=0).acquire()
    c.close()


# -- Celery ---------------------------------------------------------------------------------------------------


@pytest.mark.slow  # 2 s a server: the worker's start and stop, a countdown
def test_celery_worker_with_redis_broker_and_backend(server):
    from celery import Celery, chord, group
    from celery.contrib.testing.worker import start_worker

    # Task names of their own per server: Celery warns of a name registered twice.
    app = Celery(f"apps{server}", broker=_url(server), backend=_url(server), set_as_current=False)
    app.conf.update(
        broker_connection_retry_on_startup=False,
        broker_transport_options={"visibility_timeout": 60},
        result_expires=60,
        worker_hijack_root_logger=False,
    )

    @app.task(name=f"apps{server}.add")
    def add(a, b):
        return a + b

    @app.task(name=f"apps{server}.total")
    def total(values):
        return sum(values)

    @app.task(name=f"apps{server}.fail", bind=True, max_retries=1, default_retry_delay=0)
    def fail(self):
        if self.request.retries == 0:
            raise self.retry(countdown=0)
        raise ValueError("second try fails too")

    c = redis.Redis(port=server, db=1)
    hostname = f"apps{server}@localhost"
    # Heartbeats and task events go through the broker's fanout exchange (PUBLISH), control commands
    # through its pidbox (PUBLISH and a reply queue); the result backend waits on SUBSCRIBE.
    app.conf.update(worker_send_task_events=True, task_send_sent_event=True)
    with start_worker(
        app, pool="threads", concurrency=2, perform_ping_check=False, shutdown_timeout=WITHIN,
        loglevel="WARNING", hostname=hostname, without_heartbeat=False,
    ):  # fmt: skip
        results = [add.delay(i, i) for i in range(10)]
        assert [r.get(timeout=WITHIN) for r in results] == [2 * i for i in range(10)]
        later = add.apply_async((20, 1), countdown=0.3)
        assert later.get(timeout=WITHIN) == 21
        assert group(add.s(i, 1) for i in range(5))().get(timeout=WITHIN) == [1, 2, 3, 4, 5]
        assert chord(add.s(i, i) for i in range(5))(total.s()).get(timeout=WITHIN) == 20
        failed = fail.delay()
        with pytest.raises(ValueError, match="second try fails too"):
            failed.get(timeout=WITHIN)
        assert failed.state == "FAILURE"
        assert app.control.ping(destination=[hostname], timeout=WITHIN) == [{hostname: {"ok": "pong"}}]
        # A task due in a minute waits in the worker, unacknowledged, until the worker stops...
        due = add.apply_async((1, 2), countdown=60)
        _until(lambda: c.hlen("unacked") == 1)
        assert c.zcard("unacked_index") == 1
    # ...which puts it back on the queue.
    assert c.llen("celery") == 1 and c.hlen("unacked") == 0 and c.zcard("unacked_index") == 0
    assert due.state == "PENDING"
    # The result of a task never run stays subscribed until it is collected: collect it now, while the
    # server is up (Celery unsubscribes then, and retries for a minute against a server gone).
    del results, later, failed, due
    gc.collect()
    assert not app.backend.result_consumer.subscribed_to
    app.close()
    assert _database_0_is_empty(server)  # all of it went to database 1
    c.close()


# -- Dramatiq -------------------------------------------------------------------------------------------------


def test_dramatiq_worker_with_delays_retries_and_results(server):
    from dramatiq.brokers.redis import MAINTENANCE_SCALE, RedisBroker
    from dramatiq.results import Results
    from dramatiq.results.backends import RedisBackend

    # Every dispatch but ack and nack also runs the dispatcher's clean-up of dead workers (its
    # maintenance, one call in a thousand by default).
    broker = RedisBroker(url=_url(server), maintenance_chance=MAINTENANCE_SCALE, heartbeat_timeout=60000)
    backend = RedisBackend(url=_url(server))
    broker.add_middleware(Results(backend=backend))
    done: list[int] = []
    tries: list[int] = []

    @dramatiq.actor(broker=broker, store_results=True, max_retries=0)
    def square(x):
        done.append(x)
        return x * x

    @dramatiq.actor(broker=broker, max_retries=2, min_backoff=1, max_backoff=10)
    def flaky(x):
        tries.append(x)
        if len(tries) < 3:
            raise RuntimeError("try again")

    worker = dramatiq.Worker(broker, worker_threads=2, worker_timeout=50)
    worker.start()
    try:
        messages = [square.send(i) for i in range(10)]
        delayed = square.send_with_options(args=(100,), delay=300)
        flaky.send(7)
        wait = int(WITHIN * 1000)
        assert [backend.get_result(m, block=True, timeout=wait) for m in messages] == [
            i * i for i in range(10)
        ]
        assert backend.get_result(delayed, block=True, timeout=wait) == 10000
        broker.join(square.queue_name, timeout=int(WITHIN * 1000))
        _until(lambda: len(tries) == 3)
        broker.join(flaky.queue_name, timeout=int(WITHIN * 1000))
    finally:
        worker.stop()
        broker.close()
    assert sorted(done) == [*range(10), 100]
    assert tries == [7, 7, 7]
    assert _database_0_is_empty(server)


def test_dramatiq_rate_limiters_and_barrier(server):
    from dramatiq.rate_limits import Barrier, BucketRateLimiter, ConcurrentRateLimiter, WindowRateLimiter
    from dramatiq.rate_limits.backends import RedisBackend

    backend = RedisBackend(url=_url(server))
    got = []
    mutex = ConcurrentRateLimiter(backend, "mutex", limit=2)
    with mutex.acquire(raise_on_failure=False) as first, mutex.acquire(raise_on_failure=False) as second:
        with mutex.acquire(raise_on_failure=False) as third:
            got.append((first, second, third))
    with mutex.acquire(raise_on_failure=False) as again:
        got.append(again)
    for limiter in (
        WindowRateLimiter(backend, "window", limit=3, window=60),
        BucketRateLimiter(backend, "bucket", limit=3, bucket=60000),
    ):
        acquired = []
        for _ in range(5):
            with limiter.acquire(raise_on_failure=False) as ok:
                acquired.append(ok)
        got.append(acquired)
    barrier = Barrier(backend, "barrier", ttl=60000)
    assert barrier.create(3)
    got.append([barrier.wait(block=False) for _ in range(3)])
    assert got == [
        (True, True, False), True, [True, True, True, False, False], [True, True, True, False, False],
        [False, False, True],
    ]  # fmt: skip
    backend.client.close()


# -- Huey -----------------------------------------------------------------------------------------------------


@pytest.mark.slow  # 1 s a server: the consumer's scheduler looks once a second
def test_huey_consumer_with_scheduled_tasks_and_locks(server):
    from huey import RedisHuey
    from huey.consumer import Consumer

    h = RedisHuey("shardkv-apps", url=_url(server), blocking=True, read_timeout=0.1, utc=True)

    @h.task()
    def mul(a, b):
        return a * b

    @h.task(retries=1)
    def flaky(box):
        box.append(1)
        if len(box) < 2:
            raise RuntimeError("once")
        return "ok"

    @h.task()
    @h.lock_task("only-one")
    def locked():
        return "ran"

    # Storage paths first, no consumer: enqueue, dequeue, the schedule and results.
    assert h.pending_count() == 0
    r = mul(6, 7)
    assert h.pending_count() == 1
    h.execute(h.dequeue())
    assert r.get() == 42
    h.put("k", {"v": 1})
    assert h.get("k") == {"v": 1} and h.get("k") is None
    past = mul.schedule((2, 3), eta=datetime.datetime.now(datetime.UTC).replace(tzinfo=None))
    h.add_schedule(h.dequeue())
    assert h.scheduled_count() == 1
    for task in h.read_schedule(datetime.datetime.now(datetime.UTC).replace(tzinfo=None)):
        h.execute(task)
    assert past.get() == 6 and h.scheduled_count() == 0

    consumer = Consumer(
        h, workers=2, worker_type="thread", periodic=False, initial_delay=0.05, max_delay=0.1,
        backoff=1.15, scheduler_interval=1, check_worker_health=False,
    )  # fmt: skip
    consumer.start()
    try:
        results = [mul(i, 2) for i in range(10)]
        assert [res.get(blocking=True, timeout=WITHIN) for res in results] == [2 * i for i in range(10)]
        scheduled = mul.schedule((3, 3), delay=0.2)
        assert scheduled.get(blocking=True, timeout=WITHIN) == 9
        assert locked().get(blocking=True, timeout=WITHIN) == "ran"
        assert not h.is_locked("only-one")
    finally:
        consumer.stop(graceful=True)
        for _worker, process in consumer.worker_threads:
            process.join(WITHIN)
        consumer.scheduler.join(WITHIN)
    assert h.pending_count() == 0 and h.scheduled_count() == 0
    h.flush()
    assert _database_0_is_empty(server)


# -- RQ -------------------------------------------------------------------------------------------------------


def _rq_divide(a, b):
    return a / b


def _rq_worker(queues, connection):
    """rq's SimpleWorker, its command channel's thread waking every 0.05 s, not 60:
    at the end of a burst rq closes that channel, which waits for the thread's wake."""
    from rq import SimpleWorker

    class Worker(SimpleWorker):
        def subscribe(self):
            self.pubsub = self.connection.pubsub()
            self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
            self.pubsub_thread = self.pubsub.run_in_thread(
                sleep_time=0.05, daemon=True, exception_handler=self._pubsub_exception_handler
            )

    return Worker(queues, connection=connection)


def test_rq_simple_worker_burst(server):
    from rq import Queue
    from rq.job import Job
    from rq.registry import FailedJobRegistry, FinishedJobRegistry
    from rq.scheduler import RQScheduler

    c = redis.Redis(port=server, db=1)
    q = Queue("apps", connection=c)
    jobs = [q.enqueue(_rq_divide, i, 2) for i in range(10)]
    broken = q.enqueue(_rq_divide, 1, 0)
    after = q.enqueue(_rq_divide, 9, 3, depends_on=jobs[-1])
    scheduled = q.enqueue_in(datetime.timedelta(seconds=0), _rq_divide, 8, 4)
    scheduler = RQScheduler([q], connection=c)
    scheduler.acquire_locks()
    scheduler.enqueue_scheduled_jobs()
    scheduler.release_locks()
    assert _rq_worker([q], c).work(burst=True, max_jobs=20)
    assert [j.latest_result().return_value for j in jobs] == [i / 2 for i in range(10)]
    assert Job.fetch(after.id, connection=c).return_value() == 3
    assert Job.fetch(scheduled.id, connection=c).return_value() == 2
    assert broken.get_status(refresh=True) == "failed"
    assert broken.id in FailedJobRegistry(queue=q).get_job_ids()
    assert len(FinishedJobRegistry(queue=q)) == 12
    assert len(q) == 0
    c.close()


# -- limits ---------------------------------------------------------------------------------------------------


def test_limits_strategies_over_redis_storage(server):
    from limits import parse, strategies
    from limits.storage import RedisStorage

    storage = RedisStorage(_url(server))
    assert storage.check()
    item = parse("3/minute")
    outcome = {}
    for strategy in (
        strategies.FixedWindowRateLimiter,
        strategies.MovingWindowRateLimiter,
        strategies.SlidingWindowCounterRateLimiter,
    ):
        limiter = strategy(storage)
        user = strategy.__name__
        hits = [limiter.hit(item, user, "a") for _ in range(5)]
        other = limiter.hit(item, user, "b")
        stats = limiter.get_window_stats(item, user, "a")
        outcome[user] = (hits, other, limiter.test(item, user, "a"), stats.remaining)
        limiter.clear(item, user, "a")
        outcome[user] += (limiter.test(item, user, "a"), limiter.get_window_stats(item, user, "a").remaining)
        assert limiter.hit(item, user, "a", cost=2) and not limiter.hit(item, user, "a", cost=2)
    expected = ([True, True, True, False, False], True, False, 0, True, 3)
    assert outcome == dict.fromkeys(outcome, expected)
    assert storage.reset() > 0
    with redis.Redis(port=server, db=1) as c:
        assert c.dbsize() == 0


def test_limits_async_moving_window(server):
    from limits import parse
    from limits.aio import strategies
    from limits.aio.storage import RedisStorage

    async def run():
        storage = RedisStorage(f"async+{_url(server)}", implementation="redispy")
        limiter = strategies.MovingWindowRateLimiter(storage)
        item = parse("2/second")
        hits = [await limiter.hit(item, "async") for _ in range(3)]
        stats = await limiter.get_window_stats(item, "async")
        return hits, stats.remaining

    assert asyncio.run(run()) == ([True, True, False], 0)


# -- Stream job queues ----------------------------------------------------------------------------------------


def test_walrus_consumer_group_job_queue(server):
    db = walrus.Database(port=server, db=1)
    group = db.consumer_group("workers", ["jobs:high", "jobs:low"], consumer="w1")
    group.create()
    high = [group.jobs_high.add({"n": str(i)}) for i in range(5)]
    low = [group.jobs_low.add({"n": str(i)}) for i in range(5, 8)]
    seen = []
    for stream, messages in group.read(count=10):
        seen += [(stream, message_id, fields[b"n"]) for message_id, fields in messages]
    assert sorted(seen) == sorted(
        [(b"jobs:high", m, str(i).encode()) for i, m in enumerate(high)]
        + [(b"jobs:low", m, str(i + 5).encode()) for i, m in enumerate(low)]
    )
    assert group.jobs_high.pending()[0]["consumer"] == b"w1"
    assert group.jobs_high.ack(*high[:3]) == 3
    other = db.consumer_group("workers", ["jobs:high"], consumer="w2")
    claimed = other.jobs_high.claim(*high[3:], min_idle_time=0)
    assert [message_id for message_id, _ in claimed] == high[3:]
    assert other.jobs_high.ack(*high[3:]) == 2 and group.jobs_low.ack(*low) == 3
    assert group.jobs_high.pending() == [] and group.jobs_low.pending() == []
    assert group.read(count=10) == []
    group.destroy()
    limiter = db.rate_limit_lua("walrus-limit", limit=3, per=60)  # a Lua script, EVALSHA
    assert [limiter.limit("user") for _ in range(5)] == [False, False, False, True, True]
    lock = db.lock("walrus-lock", ttl=5000)
    assert lock.acquire(block=False) and not db.lock("walrus-lock", ttl=5000).acquire(block=False)
    assert lock.release()
    db.close()


def test_stream_job_queue_with_blocking_workers(server):
    """A job queue in the style of redis-py's stream docs: producers XADD to
    several streams, worker threads XREADGROUP BLOCK on all of them and
    XACK, and a crashed worker's jobs are taken over with XAUTOCLAIM."""
    c = redis.Redis(port=server, db=1)
    streams = ["queue:a", "queue:b", "queue:c"]  # on different shards of a 4-shard shardkv
    for s in streams:
        c.xgroup_create(s, "g", id="$", mkstream=True)
    done: list[tuple[str, bytes]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def worker(name):
        conn = redis.Redis(port=server, db=1)
        while not stop.is_set():
            reply = conn.xreadgroup("g", name, dict.fromkeys(streams, ">"), count=5, block=100)
            for stream, messages in reply:
                for message_id, fields in messages:
                    with lock:
                        done.append((stream.decode(), fields[b"job"]))
                    conn.xack(stream, "g", message_id)
        conn.close()

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    try:
        for i in range(30):
            c.xadd(streams[i % 3], {"job": str(i)}, maxlen=1000, approximate=False)
        _until(lambda: len(done) == 30)
    finally:
        stop.set()
        for t in threads:
            t.join(WITHIN)
    assert sorted(int(job) for _, job in done) == list(range(30))
    # A worker that read and died: its job is pending, and another takes it over.
    c.xadd("queue:a", {"job": "orphan"})
    assert c.xreadgroup("g", "crashed", {"queue:a": ">"}, count=1)[0][1][0][1] == {b"job": b"orphan"}
    _next, claimed, _deleted = c.xautoclaim("queue:a", "g", "rescuer", min_idle_time=0, count=10)
    assert [fields for _, fields in claimed] == [{b"job": b"orphan"}]
    assert c.xack("queue:a", "g", claimed[0][0]) == 1
    assert [c.xpending(s, "g")["pending"] for s in streams] == [0, 0, 0]
    c.close()
