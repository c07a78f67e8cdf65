"""Every knob of the service, read from ``DNE_*`` environment variables; all optional."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

import torch
from pydantic import BeforeValidator, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.clients import parse_networks
from model_store import DEFAULT_ROOT


def comma_separated(value: object) -> object:
    """``a,b`` from the environment (a JSON list would be a trap to type)."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


CommaList = Annotated[list[str], NoDecode, BeforeValidator(comma_separated)]


class Settings(BaseSettings):
    # protected_namespaces=(): our fields model_store/model are about GAN models, not pydantic.
    model_config = SettingsConfigDict(env_prefix="DNE_", protected_namespaces=())

    model_store: Path = DEFAULT_ROOT  # folder of <name>/<version>/ models
    model: str = "emoji"  # the default model; every generator in the store is served
    # The default model's default version; a number pins it (new versions never switch
    # in). Every other name's default is its latest stored version.
    model_version: int | Literal["latest"] = "latest"
    # Versions (app/registry.py): a stored version that is not a default loads on its
    # first pinned request; this many stay loaded (least recently used unloaded first).
    extra_versions: int = Field(2, ge=1)
    # The store is looked at this often for new versions, which are loaded, warmed up,
    # then switched to (0: only on SIGHUP to python -m app).
    store_poll_s: float = Field(10.0, ge=0)
    # Worker processes on one socket (app/workers.py); 0: derived from the host (one on a
    # CPU, one per two cores with a GPU: README, benchmarks/serving.md).
    workers: int = Field(0, ge=0, le=256)
    device: str = "auto"  # auto: cuda if available, else cpu
    # Precision. "none" (fp32, TF32 off) on every host is what keeps a pinned, immutable
    # link the same image on every replica. "bf16" (or "auto": bf16 where the device has
    # it natively) is faster where it is native, but its pixels differ from fp32's (up to
    # ~25/255 in alpha at edges, benchmarks/precision.md): only for a fleet that all runs
    # one precision. The precision is part of every cache key and ETag.
    amp: Literal["auto", "bf16", "none"] = "none"
    threads: int = Field(0, ge=0)  # torch CPU threads (0 = torch's default)
    # The batcher: up to max_batch_size requests per forward pass, waiting at most
    # max_delay_ms for a batch to fill; beyond queue_size waiting requests answer 503.
    # 0: a batch is what queued while the previous one ran (measured on 2 CPU cores: 4 ms
    # cost its 4 ms at concurrency 1 and gained nothing at 32; benchmarks/serving.md).
    max_batch_size: int = Field(64, ge=1, le=4096)
    max_delay_ms: float = Field(0.0, ge=0, le=1000)
    queue_size: int = Field(1024, ge=1)
    # A request without its image this long after it was queued gets 503 (also while a
    # batch hangs: its thread cannot be killed, so /readyz says 503 until it returns).
    request_timeout_s: float = Field(10.0, gt=0)
    # The cache of PNGs for deterministic requests: Redis when a URL is given, else an
    # in-process LRU bounded in bytes.
    redis_url: str | None = None
    cache_ttl_s: int = Field(7 * 24 * 3600, ge=1)
    cache_max_bytes: int = Field(64 * 1024 * 1024, ge=0)
    redis_timeout_s: float = Field(0.1, gt=0)  # per Redis call; it must never stall a request
    redis_cooldown_s: float = Field(2.0, gt=0)  # skip Redis this long after an error
    # GET /random without a query from a pool of images painted ahead (app/pool.py): at
    # most this many images and bytes, refilled random_pool_batch at a time, only while
    # the batcher is idle (a live request waits at most for one such batch). 0: off.
    # Batch 0: derived, 8 on a CPU (97% of the best img/s there, ~13 ms a batch),
    # max_batch_size on a GPU (a batch takes ~1 ms there). benchmarks/serving.md.
    random_pool: int = Field(256, ge=0)
    random_pool_bytes: int = Field(8 * 1024 * 1024, ge=0)
    random_pool_batch: int = Field(0, ge=0, le=4096)

    def pool_batch(self) -> int:
        if self.random_pool_batch:
            return self.random_pool_batch
        return (
            self.max_batch_size
            if self.torch_device().type == "cuda"
            else min(8, self.max_batch_size)
        )

    # Requests.
    max_size: int = Field(512, ge=8, le=2048)  # largest output edge in pixels
    # The site's address as visitors see it (https://emoji.example), for the absolute
    # links in link previews; unset: taken from each request's Host.
    public_url: str | None = None
    max_body_bytes: int = Field(64 * 1024, ge=1024)
    png_compress_level: int = Field(1, ge=0, le=9)  # 1: ~1.6x faster than 6, ~10% larger
    # The edge (app/server.py): what one connection may cost when the service faces the
    # internet directly. Slow clients are cut off, not waited for.
    http: Literal["h11", "httptools"] = "h11"  # the HTTP/1.1 parser (httptools: faster, optional)
    max_head_bytes: int = Field(16 * 1024, ge=1024)  # request line + headers; larger: 431
    head_timeout_s: float = Field(10.0, gt=0)  # for a whole request head; then 408
    body_timeout_s: float = Field(10.0, gt=0)  # for a whole request body; then 408
    keep_alive_s: float = Field(5.0, gt=0)  # an idle connection is closed after this
    max_connections: int = Field(1000, ge=1)  # open connections; beyond: 503 + Retry-After
    # Rate limiting per client on the generation routes (app/ratelimit.py): off at 0.
    # A token bucket, in the cache's Redis when DNE_REDIS_URL is set (shared by replicas).
    rate_limit_per_s: float = Field(0.0, ge=0)  # sustained requests per second per client
    rate_limit_burst: int = Field(20, ge=1)  # requests a client may make at once
    # Proxies whose X-Forwarded-For names the client (IPs or CIDRs: 10.0.0.0/8,::1);
    # from anyone else the header is ignored and the peer address is the client.
    trusted_proxies: CommaList = []
    cors_origins: CommaList = []  # origins allowed to read responses cross-site (* = any)
    access_log: bool = True  # one JSON line per request on the app.access logger

    @field_validator("trusted_proxies")
    @classmethod
    def addresses_or_networks(cls, entries: list[str]) -> list[str]:
        parse_networks(entries)  # raises ValueError naming the bad entry
        return entries

    def torch_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)


@lru_cache
def get_settings() -> Settings:
    return Settings()
