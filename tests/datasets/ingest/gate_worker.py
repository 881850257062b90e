"""One worker process of the per-host limit test: its own fetcher and Redis gate, one thread per
URL. A module of its own, importing no Django, so a spawned process can load it."""

from concurrent.futures import ThreadPoolExecutor

import redis

from datasets.ingest.fetching import Fetcher, FetchPolicy, RedisHostGate, parse_networks


def gated_fetches(redis_url: str, prefix: str, urls: list[str], per_host: int) -> int:
    """Fetch every URL at once under the shared limit; how many came back."""
    gate = RedisHostGate(
        client=redis.Redis.from_url(redis_url),
        per_host=per_host,
        per_second=0,
        lease_seconds=30,
        prefix=prefix,
    )
    policy = FetchPolicy(allow_networks=parse_networks(["127.0.0.0/8"]))
    with Fetcher(policy=policy, gate=gate) as fetcher, ThreadPoolExecutor(len(urls)) as pool:
        return sum(result.ok for result in pool.map(fetcher.fetch, urls))
