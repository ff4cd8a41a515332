"""A web service whose request handlers `await` actor calls, load-tested with concurrent requests.

What it shows:
- An aiohttp application, a real HTTP server on 127.0.0.1, whose handlers `await` actor
  method calls: while an actor works on one request, the event loop serves the others (no
  thread pool, no `run_in_executor`).
- A model actor: a small text classifier (a hashed bag of words into a two-layer numpy
  network; random weights stand in for trained ones), loaded once in its constructor. It
  also rate-limits each API key with a token bucket (RATE requests/s, bursts of BURST):
  over the limit it raises `RateLimited`, which the handler catches by its own type (a
  remote error re-raises as its original type) and answers `429 Too Many Requests` with a
  `Retry-After` header.
- A cache actor (an LRU dict) in front of the model: a cached answer never reaches the
  model and costs no quota. The handler stores a fresh answer with a fire-and-forget call.
- A load test over real sockets: many users, each within its quota, and one greedy user far
  over it send requests concurrently. Every answer is checked against the model run in the
  driver, the greedy user's successes against what its token bucket allows, and the
  client's counts against the actors' own (`GET /stats`).

The load generator runs in the same process and event loop as the server, so the
throughput printed is a lower bound.

Expected output (times, latencies and the split of the greedy user's requests vary):

    serving http://127.0.0.1:46883 (aiohttp; a model actor and a cache actor, process backend)
    load: 2,000 requests (200 users x 8 within quota, 1 greedy user x 400), 64 in flight
      2,000 answered in 1.5 s: 1,315 requests/s; latency p50 38 ms, p99 99 ms
      status: 200 x 1,617, 429 x 383
      cache: 1,295 hits, 705 misses; the model answered 322 requests
      users within quota: 1,600 of 1,600 answered 200
      greedy user: 17 of 400 answered (its bucket allows at most 10 + 5/s x 1.5 s = 17),
        383 refused with 429 (Retry-After: 1)
      greedy user, after waiting Retry-After: 200
      every 200 matches the driver's own model; /stats agrees with the client's counts
    done

Run it with:  python examples/web_service.py          (full size)
              python examples/web_service.py --small  (the size the tests use)
              python examples/web_service.py --serve [--port 8080]  (serve until Ctrl-C)

and, while it serves, in another terminal:

    curl -s localhost:8080/predict -H 'X-API-Key: me' -d '{"text": "hello actors"}'
    curl -s localhost:8080/stats
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import dataclasses
import math
import os
import signal
import sys
import time
import zlib
from typing import Any

import aiohttp
import numpy as np
from aiohttp import web

import actorlib

SMALL = "--small" in sys.argv or os.environ.get("ACTORLIB_EXAMPLE_SIZE") == "small"
USERS = 20 if SMALL else 200
REQUESTS_PER_USER = 8  # at most BURST: a user within its quota is never refused
GREEDY_REQUESTS = 60 if SMALL else 400
QUERIES = 40 if SMALL else 400  # distinct texts the users ask about; popular ones repeat
IN_FLIGHT = 16 if SMALL else 64  # requests the load generator keeps open at once
RATE, BURST = 5.0, 10  # per API key: requests per second, and the bucket's size
CACHE_SIZE = 1000
FEATURES, HIDDEN, LABELS = 4096, 256, 8
HOST = "127.0.0.1"


# --------------------------------------------------------------------------- the model


def make_weights(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    w1 = rng.standard_normal((FEATURES, HIDDEN), dtype=np.float32)  # one row per token bucket
    w2 = rng.standard_normal((HIDDEN, LABELS), dtype=np.float32) / np.sqrt(HIDDEN)
    return w1, w2


def classify(weights: tuple[np.ndarray, np.ndarray], text: str) -> dict[str, Any]:
    """The label and its probability for ``text``."""
    # The hashed bag of words (crc32: the same in every process) is sparse, so the first
    # layer only sums the rows of the tokens present.
    rows = [zlib.crc32(token.encode()) % FEATURES for token in text.lower().split()]
    w1, w2 = weights
    logits = np.maximum(w1[rows].sum(axis=0), 0.0) @ w2
    p = np.exp(logits - logits.max())
    p /= p.sum()
    label = int(p.argmax())
    return {"label": label, "score": float(p[label])}


class RateLimited(Exception):
    """An API key is over its quota; ``retry_after`` is when its next token is due (s)."""

    def __init__(self, api_key: str, retry_after: float) -> None:
        super().__init__(api_key, retry_after)  # the arguments, so that it pickles
        self.api_key = api_key
        self.retry_after = retry_after

    def __str__(self) -> str:
        return f"API key {self.api_key!r} is over its quota: retry after {self.retry_after:.2f} s"


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up; a request takes one."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self.tokens = float(burst)
        self.last = time.monotonic()

    def take(self) -> float:
        """0 if a token was taken, else the seconds until the next one."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


@actorlib.remote(num_cpus=1)
class Model:
    """Holds the weights; answers one request at a time, within each API key's quota."""

    def __init__(self, seed: int, rate: float, burst: int) -> None:
        self.weights = make_weights(seed)  # loaded once, not per request
        self.rate, self.burst = rate, burst
        self.buckets: dict[str, TokenBucket] = {}
        self.served: collections.Counter[str] = collections.Counter()
        self.limited: collections.Counter[str] = collections.Counter()

    def predict(self, api_key: str, text: str) -> dict[str, Any]:
        if api_key not in self.buckets:
            self.buckets[api_key] = TokenBucket(self.rate, self.burst)
        wait = self.buckets[api_key].take()
        if wait:
            self.limited[api_key] += 1
            raise RateLimited(api_key, wait)
        self.served[api_key] += 1
        return classify(self.weights, text)

    def stats(self) -> dict[str, Any]:
        return {
            "served": sum(self.served.values()),
            "limited": sum(self.limited.values()),
            "api_keys": len(self.buckets),
            "served_by_key": dict(self.served),
            "limited_by_key": dict(self.limited),
        }


@actorlib.remote(num_cpus=0)
class Cache:
    """A least-recently-used cache of answers, keyed by the request's text."""

    def __init__(self, capacity: int) -> None:
        self.entries: collections.OrderedDict[str, dict[str, Any]] = collections.OrderedDict()
        self.capacity = capacity
        self.hits = self.misses = self.evictions = 0

    def get(self, key: str) -> dict[str, Any] | None:
        value = self.entries.get(key)
        if value is None:
            self.misses += 1
            return None
        self.entries.move_to_end(key)
        self.hits += 1
        return value

    def put(self, key: str, value: dict[str, Any]) -> None:
        self.entries[key] = value
        self.entries.move_to_end(key)
        while len(self.entries) > self.capacity:
            self.entries.popitem(last=False)
            self.evictions += 1

    def stats(self) -> dict[str, int]:
        return {
            "entries": len(self.entries),
            "hits": self.hits,
            "misses": self.misses,
            "evictions": self.evictions,
        }


# --------------------------------------------------------------------------- the service

MODEL = web.AppKey("model", actorlib.ActorHandle)
CACHE = web.AppKey("cache", actorlib.ActorHandle)


async def predict(request: web.Request) -> web.Response:
    """POST /predict, header X-API-Key, body {"text": "..."}: the text's label and score."""
    api_key = request.headers.get("X-API-Key")
    if not api_key:
        return web.json_response({"error": "missing X-API-Key header"}, status=401)
    try:
        text = (await request.json())["text"]
        if not isinstance(text, str):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        return web.json_response({"error": 'expected a JSON body {"text": "..."}'}, status=400)

    cached = await request.app[CACHE].get.remote(text)
    if cached is not None:
        return web.json_response({"text": text, **cached, "cached": True})
    answer_ref = request.app[MODEL].predict.remote(api_key, text)
    try:
        answer = await answer_ref
    except RateLimited as err:  # raised in the model actor, re-raised here as itself
        return web.json_response(
            {"error": "rate limit exceeded", "retry_after": round(err.retry_after, 3)},
            status=429,
            headers={"Retry-After": str(math.ceil(err.retry_after))},
        )
    # Fire and forget; passing the ref, the cache gets the answer without the driver
    # sending it again.
    request.app[CACHE].put.remote(text, answer_ref)
    return web.json_response({"text": text, **answer, "cached": False})


async def stats(request: web.Request) -> web.Response:
    """GET /stats: the model's and the cache's counters, asked for concurrently."""
    model, cache = await asyncio.gather(
        request.app[MODEL].stats.remote(), request.app[CACHE].stats.remote()
    )
    return web.json_response({"model": model, "cache": cache})


async def actors(app: web.Application) -> Any:
    """Start the actors with the server, and stop them with it."""
    app[MODEL] = Model.remote(seed=0, rate=RATE, burst=BURST)
    app[CACHE] = Cache.remote(CACHE_SIZE)
    # Accept requests only once both actors are up (their constructors have run).
    await asyncio.gather(app[MODEL].stats.remote(), app[CACHE].stats.remote())
    yield
    actorlib.kill(app[MODEL])
    actorlib.kill(app[CACHE])


def make_app() -> web.Application:
    app = web.Application()
    app.add_routes([web.post("/predict", predict), web.get("/stats", stats)])
    app.cleanup_ctx.append(actors)
    return app


async def start_server(port: int) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(make_app())
    await runner.setup()  # runs the app's startup: the actors are up after this
    await web.TCPSite(runner, HOST, port).start()
    host, port = runner.addresses[0][:2]  # the port the OS chose, for port 0
    return runner, f"http://{host}:{port}"


async def serve(port: int) -> None:
    """Serve until Ctrl-C (SIGINT) or SIGTERM."""
    runner, url = await start_server(port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except NotImplementedError:  # Windows: Ctrl-C raises KeyboardInterrupt instead
            pass
    print(f"serving {url} (Ctrl-C stops it)", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        print("stopped", flush=True)


# --------------------------------------------------------------------------- the load test

WORDS = [
    "actor", "task", "object", "ref", "store", "future", "wait", "get", "put", "remote",
    "worker", "driver", "node", "cluster", "shard", "batch", "model", "cache", "queue",
    "stream", "event", "loop", "async", "await", "retry", "crash", "restart", "lineage",
    "memory", "shared", "copy", "zero", "numpy", "array", "tensor",
]  # fmt: skip


def make_requests(seed: int = 0) -> list[tuple[str, str]]:
    """(API key, text) pairs in a shuffled order: every user's requests and the greedy one's.

    Users pick texts from QUERIES distinct ones, the popular ones far more often (Zipf),
    so many answers come from the cache. The greedy user's texts are all different.
    """
    rng = np.random.default_rng(seed)
    queries = [
        " ".join(rng.choice(WORDS, size=rng.integers(3, 12))) + f" #{i}" for i in range(QUERIES)
    ]
    popularity = 1.0 / np.arange(1, QUERIES + 1)
    picks = rng.choice(QUERIES, size=(USERS, REQUESTS_PER_USER), p=popularity / popularity.sum())
    requests = [(f"user-{u}", queries[q]) for u in range(USERS) for q in picks[u]]
    requests += [("greedy", f"greedy request {i}") for i in range(GREEDY_REQUESTS)]
    return [requests[i] for i in rng.permutation(len(requests))]


@dataclasses.dataclass
class Reply:
    api_key: str
    text: str
    status: int
    body: dict[str, Any]
    retry_after: str | None  # the Retry-After header, on a 429
    seconds: float  # from sending the request to reading the whole answer
    end: float  # when the answer was read (time.perf_counter())

    @property
    def from_model(self) -> bool:
        return self.status == 200 and not self.body["cached"]


async def send(session: aiohttp.ClientSession, url: str, api_key: str, text: str) -> Reply:
    t0 = time.perf_counter()
    headers = {"X-API-Key": api_key}
    async with session.post(f"{url}/predict", json={"text": text}, headers=headers) as resp:
        body = await resp.json()
    end = time.perf_counter()
    return Reply(api_key, text, resp.status, body, resp.headers.get("Retry-After"), end - t0, end)


async def load_test(backend: str) -> None:
    runner, url = await start_server(0)  # port 0: the OS picks a free one
    print(f"serving {url} (aiohttp; a model actor and a cache actor, {backend} backend)")
    requests = make_requests()
    print(
        f"load: {len(requests):,} requests ({USERS} users x {REQUESTS_PER_USER} within "
        f"quota, 1 greedy user x {GREEDY_REQUESTS}), {IN_FLIGHT} in flight"
    )
    try:
        connector = aiohttp.TCPConnector(limit=IN_FLIGHT)
        async with aiohttp.ClientSession(connector=connector) as session:
            gate = asyncio.Semaphore(IN_FLIGHT)

            async def one(api_key: str, text: str) -> Reply:
                async with gate:
                    return await send(session, url, api_key, text)

            t0 = time.perf_counter()
            replies = await asyncio.gather(*(one(key, text) for key, text in requests))
            check_replies(replies, time.perf_counter() - t0)

            # The greedy user waits as told, and is answered again.
            retry_after = next(int(r.retry_after) for r in replies if r.retry_after)
            await asyncio.sleep(retry_after)
            last = await send(session, url, "greedy", "greedy, after waiting")
            print(f"  greedy user, after waiting Retry-After: {last.status}")
            assert last.status == 200, last

            async with session.get(f"{url}/stats") as resp:
                check_stats([*replies, last], await resp.json())
    finally:
        await runner.cleanup()
    print("  every 200 matches the driver's own model; /stats agrees with the client's counts")


def check_replies(replies: list[Reply], elapsed: float) -> None:
    statuses = collections.Counter(r.status for r in replies)
    ms = np.array([r.seconds for r in replies]) * 1000
    print(
        f"  {len(replies):,} answered in {elapsed:.1f} s: {len(replies) / elapsed:,.0f} "
        f"requests/s; latency p50 {np.percentile(ms, 50):.0f} ms, "
        f"p99 {np.percentile(ms, 99):.0f} ms"
    )
    print("  status: " + ", ".join(f"{s} x {n:,}" for s, n in sorted(statuses.items())))
    assert set(statuses) <= {200, 429}, statuses

    # Every answer is the model's: run it here, in the driver, on each distinct text.
    weights = make_weights(0)
    expected = {text: classify(weights, text) for text in {r.text for r in replies}}
    for r in replies:
        if r.status == 200:
            want = expected[r.text]
            assert r.body["text"] == r.text and r.body["label"] == want["label"], r
            assert abs(r.body["score"] - want["score"]) < 1e-5, r

    cached = sum(r.status == 200 and r.body["cached"] for r in replies)
    print(
        f"  cache: {cached:,} hits, {len(replies) - cached:,} misses; "
        f"the model answered {sum(r.from_model for r in replies):,} requests"
    )
    assert cached > 0, "no request was answered from the cache"

    users = [r for r in replies if r.api_key != "greedy"]
    users_ok = sum(r.status == 200 for r in users)
    print(f"  users within quota: {users_ok:,} of {len(users):,} answered 200")
    assert users_ok == len(users), "a user within its quota was refused"

    # The greedy user: its bucket holds BURST tokens and refills at RATE a second, so over
    # the span of its requests at most BURST + RATE * span can have been answered.
    greedy = [r for r in replies if r.api_key == "greedy"]
    ok = sum(r.status == 200 for r in greedy)
    refused = [r for r in greedy if r.status == 429]
    span = max(r.end for r in greedy) - min(r.end - r.seconds for r in greedy)
    allowed = BURST + RATE * span
    print(
        f"  greedy user: {ok} of {len(greedy)} answered (its bucket allows at most "
        f"{BURST} + {RATE:g}/s x {span:.1f} s = {allowed:.0f}),"
    )
    assert BURST <= ok <= allowed + 1, (ok, allowed)
    assert refused, "the greedy user was never refused"
    assert all(r.retry_after and int(r.retry_after) >= 1 for r in refused), refused[0]
    print(f"    {len(refused)} refused with 429 (Retry-After: {refused[0].retry_after})")


def check_stats(replies: list[Reply], server: dict[str, Any]) -> None:
    """The actors counted what the client saw."""
    model, cache = server["model"], server["cache"]
    from_model = collections.Counter(r.api_key for r in replies if r.from_model)
    refused = sum(r.status == 429 for r in replies)
    cached = sum(r.status == 200 and r.body["cached"] for r in replies)
    assert model["served"] == sum(from_model.values()), (model, from_model)
    assert model["served_by_key"] == from_model, (model, from_model)
    assert model["limited"] == refused == model["limited_by_key"]["greedy"], (model, refused)
    assert cache["hits"] == cached and cache["misses"] == len(replies) - cached, (cache, cached)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="the size the tests use")
    parser.add_argument("--serve", action="store_true", help="serve until Ctrl-C")
    parser.add_argument("--port", type=int, default=8080, help="with --serve (0: any free)")
    args = parser.parse_args()
    info = actorlib.init(ignore_reinit_error=True)
    try:
        asyncio.run(serve(args.port) if args.serve else load_test(info.backend))
    finally:
        actorlib.shutdown()
    print("done")


if __name__ == "__main__":
    main()
