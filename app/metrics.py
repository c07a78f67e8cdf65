"""Prometheus metrics of the service, in a registry of its own (one per app instance).

With several worker processes (DNE_WORKERS, app/workers.py) every worker counts into
prometheus-client's multiprocess files (``PROMETHEUS_MULTIPROC_DIR``, made fresh by the
supervisor), and ``/metrics`` from any worker adds up all of them. Two metrics are not
counts and have no multiprocess form in prometheus-client: ``dne_model_info`` (each
worker writes the versions it serves to a small JSON file beside the counts; the
exposition is their union) and ``dne_ready`` (computed when scraped).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from model_store import Manifest

INFO_LABELS = ("model", "version", "architecture", "device", "precision")

# Cache hits are sub-millisecond and a CPU batch can take a second: 0.5 ms .. 10 s.
SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class Metrics:
    """Everything ``/metrics`` shows."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, multiprocess_dir: Path | None = None) -> None:
        """``multiprocess_dir``: the supervisor's PROMETHEUS_MULTIPROC_DIR (several
        workers); None: this process alone (its own registry, as in the tests)."""
        self.multiprocess_dir = multiprocess_dir
        self.ready_check: Callable[[], bool] = lambda: False  # set by the app factory
        self._models: dict[tuple[str, ...], str] = {}  # dne_model_info labels → default
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
            multiprocess_mode="livesum",  # the workers' queues together
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
            multiprocess_mode="livesum",  # each worker has its own cache: together
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
        self.random_pool = Counter(
            "dne_random_pool",
            "GET /random at the default options with the pool on: hit (painted ahead) or "
            "empty (painted now)",
            ["result"],
            registry=r,
        )
        self.random_pool_images = Gauge(
            "dne_random_pool_images",
            "images painted ahead for GET /random, waiting to be served",
            registry=r,
            multiprocess_mode="livesum",  # each worker has its own pool: together
        )
        if multiprocess_dir is None:
            r.register(StateCollector(self))
        # Every label value known up front exposes a 0, so rate() sees the first event.
        for result in ("hit", "miss", "error", "bypass"):
            self.cache_lookups.labels(result)
        for reason in ("queue_full", "deadline", "shutdown", "not_ready", "abandoned"):
            self.rejections.labels(reason)
        for result in ("allowed", "limited", "unchecked"):
            self.rate_limit.labels(result)
        for result in ("hit", "empty"):
            self.random_pool.labels(result)

    def rejected(self, reason: str) -> None:
        self.rejections.labels(reason).inc()

    def batcher_observer(self, model: str, version: int) -> BatchMetrics:
        return BatchMetrics(self, model, version)

    def show_model(self, m: Manifest, device: object, precision: str, default: bool) -> None:
        self._models[info_labels(m, device, precision)] = "true" if default else "false"
        self._publish_models()

    def forget_model(self, m: Manifest, device: object, precision: str) -> None:
        """An unloaded version leaves dne_model_info."""
        self._models.pop(info_labels(m, device, precision), None)
        self._publish_models()

    def forget_queue(self, model: str, version: int) -> None:
        """An unloaded version's queue leaves dne_queue_depth (once drained). Files of
        several workers cannot forget a series: there it stays, at 0."""
        if self.multiprocess_dir is None:
            self.queue_depth_gauge.remove(model, str(version))
        else:
            self.queue_depth_gauge.labels(model, str(version)).set(0)

    def models(self) -> list[dict[str, str]]:
        """dne_model_info's label sets: this process's, or every live worker's."""
        if self.multiprocess_dir is None:
            return [self._info(labels, default) for labels, default in self._models.items()]
        found: dict[tuple[tuple[str, str], ...], dict[str, str]] = {}
        for path in sorted(self.multiprocess_dir.glob("models_*.json")):
            try:
                entries = json.loads(path.read_text())
            except (OSError, ValueError):
                continue  # a worker that just died: its file is being removed
            for entry in entries:
                found[tuple(sorted(entry.items()))] = entry
        return list(found.values())

    @staticmethod
    def _info(labels: tuple[str, ...], default: str) -> dict[str, str]:
        return {**dict(zip(INFO_LABELS, labels, strict=True)), "default": default}

    def _publish_models(self) -> None:
        """Several workers: this one's versions, in a file the others read (replaced
        whole, so a reader never sees half of it)."""
        if self.multiprocess_dir is None:
            return
        path = self.multiprocess_dir / f"models_{os.getpid()}.json"
        entries = [self._info(labels, default) for labels, default in self._models.items()]
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(entries))
        temporary.replace(path)

    def render(self) -> bytes:
        if self.multiprocess_dir is None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()  # every worker's files, read now
        MultiProcessCollector(registry, str(self.multiprocess_dir))
        registry.register(StateCollector(self))
        return generate_latest(registry)


def info_labels(m: Manifest, device: object, precision: str) -> tuple[str, ...]:
    """dne_model_info's label values (INFO_LABELS). The precision is there because replicas
    that should paint alike must show the same one."""
    return (m.name, str(m.version), m.architecture, str(device), precision)


class StateCollector:
    """What is read when scraped rather than counted: the versions served and readiness."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        info = InfoMetricFamily(
            "dne_model",
            "generator versions loaded now; default=true: the one unpinned requests get",
            labels=[*INFO_LABELS, "default"],
        )
        for entry in self.metrics.models():
            info.add_metric([entry[name] for name in (*INFO_LABELS, "default")], {})
        yield info
        yield GaugeMetricFamily(
            "dne_ready",
            "1 when /readyz answers 200 (with several workers: every one of them ready)",
            value=1.0 if self.metrics.ready_check() else 0.0,
        )


def forget_process(multiprocess_dir: Path, pid: int) -> None:
    """A dead worker's live gauges and served versions leave the exposition (its counts
    stay: totals must not go down)."""
    mark_process_dead(pid, str(multiprocess_dir))
    (multiprocess_dir / f"models_{pid}.json").unlink(missing_ok=True)


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
