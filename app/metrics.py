"""Prometheus metrics of the service, in a registry of its own (one per app instance)."""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from model_store import Manifest

# Cache hits are sub-millisecond and a CPU batch can take a second: 0.5 ms .. 10 s.
SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class Metrics:
    """Everything ``/metrics`` shows."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter(
            "dne_requests",
            "HTTP requests by route template, method and status",
            ["route", "method", "status"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "dne_request_duration_seconds",
            "HTTP request latency by route template",
            ["route"],
            buckets=SECONDS,
            registry=r,
        )
        self.batch_size = Histogram(
            "dne_batch_size",
            "requests per generator forward pass",
            buckets=BATCH_SIZES,
            registry=r,
        )
        self.queue_depth_gauge = Gauge(
            "dne_queue_depth",
            "requests waiting for the generator, by model version (each has its own queue)",
            ["model", "version"],
            registry=r,
        )
        self.queue_wait = Histogram(
            "dne_queue_wait_seconds",
            "time from enqueue to the start of its forward pass",
            buckets=SECONDS,
            registry=r,
        )
        self.inference = Histogram(
            "dne_inference_seconds",
            "one batched forward pass, uint8 conversion included",
            buckets=SECONDS,
            registry=r,
        )
        self.png_encode = Histogram(
            "dne_png_encode_seconds", "PNG encoding of one image", buckets=SECONDS, registry=r
        )
        self.cache_lookups = Counter(
            "dne_cache_lookups",
            "cache lookups by result (hit, miss, error, bypass)",
            ["result"],
            registry=r,
        )
        self.cache_bytes = Gauge(
            "dne_cache_bytes",
            "bytes of images held by the in-process cache (0 when the cache is Redis)",
            registry=r,
        )
        self.rejections = Counter(
            "dne_rejections",
            "requests refused or dropped unanswered, by reason",
            ["reason"],
            registry=r,
        )
        self.rate_limit = Counter(
            "dne_rate_limit",
            "rate limit checks by result (allowed, limited, unchecked: Redis unavailable)",
            ["result"],
            registry=r,
        )
        self.images_generated = Counter(
            "dne_images_generated", "images painted by the generator", registry=r
        )
        self.model_info = Info(
            "dne_model",
            "generator versions loaded now; default=true: the one unpinned requests get",
            # precision: replicas that should paint alike must show the same one.
            ["model", "version", "architecture", "device", "precision"],
            registry=r,
        )
        # Every label value known up front exposes a 0, so rate() sees the first event.
        for result in ("hit", "miss", "error", "bypass"):
            self.cache_lookups.labels(result)
        for reason in ("queue_full", "deadline", "shutdown", "not_ready", "abandoned"):
            self.rejections.labels(reason)
        for result in ("allowed", "limited", "unchecked"):
            self.rate_limit.labels(result)

    def rejected(self, reason: str) -> None:
        self.rejections.labels(reason).inc()

    def batcher_observer(self, model: str, version: int) -> BatchMetrics:
        return BatchMetrics(self, model, version)

    def show_model(self, m: Manifest, device: object, precision: str, default: bool) -> None:
        labels = (m.name, str(m.version), m.architecture, str(device), precision)
        self.model_info.labels(*labels).info({"default": "true" if default else "false"})

    def forget_model(self, m: Manifest, device: object, precision: str) -> None:
        """An unloaded version leaves dne_model_info."""
        self.model_info.remove(m.name, str(m.version), m.architecture, str(device), precision)

    def forget_queue(self, model: str, version: int) -> None:
        """An unloaded version's queue leaves dne_queue_depth (once drained)."""
        self.queue_depth_gauge.remove(model, str(version))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class BatchMetrics:
    """The batcher's ``BatchObserver`` for one model."""

    def __init__(self, metrics: Metrics, model: str, version: int) -> None:
        self.metrics = metrics
        self.depth = metrics.queue_depth_gauge.labels(model, str(version))

    def queue_depth(self, depth: int) -> None:
        self.depth.set(depth)

    def batch(self, size: int, queue_wait_s: list[float], run_s: float) -> None:
        m = self.metrics
        m.batch_size.observe(size)
        m.inference.observe(run_s)
        m.images_generated.inc(size)
        for wait in queue_wait_s:
            m.queue_wait.observe(wait)

    def rejected(self, reason: str) -> None:
        self.metrics.rejected(reason)
