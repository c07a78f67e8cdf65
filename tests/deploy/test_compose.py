"""docker-compose.yml for real: two api replicas behind the load balancer, Redis and
Prometheus, started from the images built here; traffic only to ports on 127.0.0.1."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.deploy.conftest import ROOT, Images, compose_command, free_port, run, wait_for
from tests.training.conftest import shapes_dataset
from training.data import save_dataset

pytestmark = pytest.mark.slow
SERVICES = ("api", "lb", "redis", "prometheus")  # Grafana's image cannot be had here
DASHBOARD = ROOT / "docker/grafana/dashboards/dne.json"


@dataclass
class Stack:
    compose: list[str]
    env: dict[str, str]
    project: str
    url: str
    prometheus: str

    def containers(self, service: str) -> list[str]:
        out = run(
            *("docker", "ps", "-q", "--filter", f"label=com.docker.compose.project={self.project}"),
            *("--filter", f"label=com.docker.compose.service={service}"),
        )
        return sorted(out.split())

    def logs(self, service: str) -> str:
        return run(*self.compose, "logs", "--no-color", "--tail", "50", service, env=self.env)

    def get(self, client: httpx.Client, path: str) -> httpx.Response:
        """A request through the load balancer; a failure shows the balancer's log."""
        try:
            return client.get(path)
        except httpx.HTTPError as exc:
            (lb,) = self.containers("lb")
            restarts = run("docker", "inspect", "--format", "{{.RestartCount}}", lb).strip()
            pytest.fail(
                f"GET {path}: {exc!r}\nload balancer ({restarts} restarts) log:\n" + self.logs("lb")
            )

    def down(self) -> None:
        run(*self.compose, "down", "--volumes", "--remove-orphans", env=self.env)

    def query(self, promql: str) -> list[dict]:
        answer = httpx.get(f"{self.prometheus}/api/v1/query", params={"query": promql}).json()
        assert answer["status"] == "success", (promql, answer)
        return answer["data"]["result"]


def inside(container: str, method: str, path: str, body: dict | None = None) -> dict:
    """A request from inside a replica to itself: status, headers and body (as text)."""
    script = (
        "import json, sys, urllib.request, urllib.error\n"
        "data = sys.argv[3].encode() if sys.argv[3] else None\n"
        "req = urllib.request.Request('http://127.0.0.1:8000' + sys.argv[2], data=data,\n"
        "    method=sys.argv[1], headers={'content-type': 'application/json'})\n"
        "try:\n    r = urllib.request.urlopen(req, timeout=30)\n"
        "except urllib.error.HTTPError as e:\n    r = e\n"
        "print(json.dumps({'status': r.status, 'headers': dict(r.headers),\n"
        "    'text': r.read().decode('latin-1')}))\n"
    )
    out = run(
        "docker",
        "exec",
        container,
        "python",
        "-c",
        script,
        method,
        path,
        json.dumps(body) if body else "",
    )
    return json.loads(out)


def counter(metrics_text: str, name: str, **labels: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                total += sample.value
    return total


@pytest.fixture(scope="module")
def stack(images: Images, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    project = f"dne-e2e-{os.getpid()}"
    data = tmp_path_factory.mktemp("data")
    data.chmod(0o755)  # the train service reads it as its own unprivileged user
    port, prometheus_port = free_port(), free_port()
    env = {
        **os.environ,
        "DNE_DATA": str(data),
        "DNE_PORT": f"127.0.0.1:{port}",
        "DNE_PROMETHEUS_PORT": str(prometheus_port),
        "DNE_API_IMAGE": images.api,
        "DNE_TRAIN_IMAGE": images.train,
    }
    files = ["-f", "docker-compose.yml", "-f", "docker/local/compose.local.yml"]
    s = Stack(
        [*compose_command(), "-p", project, *files],
        env,
        project,
        f"http://127.0.0.1:{port}",
        f"http://127.0.0.1:{prometheus_port}",
    )
    try:
        run(*s.compose, "up", "-d", "--no-build", *SERVICES, env=env)
        wait_for("two ready replicas", lambda: ready_replicas(s) == 2 or None, timeout=120)
        yield s
    finally:
        s.down()


def ready_replicas(s: Stack) -> int:
    health = run("docker", "inspect", "--format", "{{.State.Health.Status}}", *s.containers("api"))
    return health.split().count("healthy")


def test_requests_spread_over_both_replicas(stack: Stack) -> None:
    replicas = stack.containers("api")
    assert len(replicas) == 2
    before = [
        counter(inside(c, "GET", "/metrics")["text"], "dne_requests_total", route="/random")
        for c in replicas
    ]
    with httpx.Client(base_url=stack.url, timeout=30) as client:
        for _ in range(40):
            r = stack.get(client, "/random")
            assert r.status_code == 200 and r.content.startswith(b"\x89PNG")
    served = [
        counter(inside(c, "GET", "/metrics")["text"], "dne_requests_total", route="/random") - b
        for c, b in zip(replicas, before, strict=True)
    ]
    assert sum(served) == 40
    assert min(served) >= 10, f"round robin over ready replicas, got {served}"


def test_an_image_painted_by_one_replica_is_a_cache_hit_on_the_other(stack: Stack) -> None:
    a, b = stack.containers("api")
    body = {"seed": 987654321, "category": "flags"}
    first = inside(a, "POST", "/generate", body)
    assert (first["status"], first["headers"]["x-cache"]) == (200, "miss")
    second = inside(b, "POST", "/generate", body)
    assert (second["status"], second["headers"]["x-cache"]) == (200, "hit")
    assert second["text"] == first["text"]  # the same bytes, from Redis
    painted = [
        counter(inside(c, "GET", "/metrics")["text"], "dne_cache_lookups_total", result="hit")
        for c in (a, b)
    ]
    assert painted[1] >= 1


def test_redis_is_a_bounded_lru_cache_without_persistence(stack: Stack) -> None:
    (redis,) = stack.containers("redis")
    config = run("docker", "exec", redis, "redis-cli", "CONFIG", "GET", "*").split("\n")
    settings = dict(zip(config[::2], config[1::2], strict=False))
    assert settings["maxmemory"] == str(256 * 1024 * 1024)
    assert settings["maxmemory-policy"] == "allkeys-lru"
    assert settings["save"] == "" and settings["appendonly"] == "no"


def test_prometheus_scrapes_both_replicas(stack: Stack) -> None:
    def both_up() -> list | None:
        targets = httpx.get(f"{stack.prometheus}/api/v1/targets").json()["data"]
        dne = [t for t in targets["activeTargets"] if t["labels"]["job"] == "dne"]
        return dne if [t["health"] for t in dne] == ["up", "up"] else None

    targets = wait_for("both replicas up in Prometheus", both_up, timeout=60)
    replicas = {t["labels"]["instance"] for t in targets}

    def per_replica() -> list | None:
        series = stack.query('sum by (instance) (dne_requests_total{route="/random"})')
        return series if len(series) == 2 else None

    painted = wait_for("dne_requests_total of both replicas", per_replica, timeout=30)
    assert {series["metric"]["instance"] for series in painted} == replicas


def grafana_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) for every query of the dashboard, at a 1-minute rate window."""
    board = json.loads(DASHBOARD.read_text())
    return [
        (panel["title"], target["expr"].replace("$__rate_interval", "1m"))
        for panel in board["panels"]
        for target in panel["targets"]
    ]


def test_every_grafana_panel_query_returns_data(stack: Stack) -> None:
    queries = grafana_queries()
    assert len(queries) >= 9
    with httpx.Client(base_url=stack.url, timeout=30) as client:  # fresh traffic for rates
        for seed in range(20):
            assert stack.get(client, f"/models/emoji/1/seed/{seed % 10}").status_code == 200

    def without_data() -> list[str]:
        return [f"{title}: {q}" for title, q in queries if not stack.query(q)]

    # Rates need two scrapes after the traffic; a query still empty after that is a bug.
    deadline = time.monotonic() + 45
    while (missing := without_data()) and time.monotonic() < deadline:
        time.sleep(1)
    assert missing == []


def test_alert_rules_load_and_evaluate(stack: Stack) -> None:
    def evaluated() -> dict | None:
        groups = httpx.get(f"{stack.prometheus}/api/v1/rules").json()["data"]["groups"]
        rules = {r["name"]: r for g in groups for r in g["rules"]}
        return (
            rules
            if rules
            and all(r.get("lastEvaluation", "0001").startswith("2") for r in rules.values())
            else None
        )

    rules = wait_for("alert rules evaluated", evaluated, timeout=30)
    assert set(rules) >= {
        "DneNoReadyReplica",
        "DneReplicaDown",
        "DneLatencyP99High",
        "DneRejecting",
        "DneCacheFailing",
    }
    assert {name: r["health"] for name, r in rules.items()} == dict.fromkeys(rules, "ok")
    assert rules["DneNoReadyReplica"]["state"] == "inactive"  # two replicas are ready


def test_the_train_profile_exports_a_model_the_replicas_then_serve(stack: Stack) -> None:
    """A tiny real training run in the train service, exported into the model-store volume;
    a replica started after it serves the new model."""
    save_dataset(shapes_dataset(), Path(stack.env["DNE_DATA"]) / "shapes.dne.gz")
    tiny = ["--g-config", '{"ngf": 8, "conditioning": "cbn"}', "--d-config", '{"width": 8}']
    train = ["python", "-m", "training", "train", "--preset", "sngan", *tiny, "--z-dim", "16"]
    train += ["--batch-size", "4", "--grid", "2", "--steps", "3", "--no-progress"]
    train += ["--data", "/data/shapes.dne.gz", "--run-dir", "/runs/shapes"]
    run(*stack.compose, "run", "--rm", "train", *train, env=stack.env)
    export = ["python", "-m", "training", "export", "/runs/shapes", "--name", "shapes"]
    assert "shapes" in run(*stack.compose, "run", "--rm", "train", *export, env=stack.env)

    replica = stack.containers("api")[0]
    run("docker", "restart", replica)
    wait_for("the restarted replica to be ready", lambda: ready_replicas(stack) == 2 or None)
    answer = inside(replica, "GET", "/models/shapes/1/seed/7")
    assert answer["status"] == 200 and answer["text"].startswith("\x89PNG")


def test_down_leaves_nothing_running(stack: Stack) -> None:
    stack.down()
    label = f"label=com.docker.compose.project={stack.project}"
    assert run("docker", "ps", "-aq", "--filter", label).split() == []
    assert run("docker", "network", "ls", "-q", "--filter", label).split() == []
    assert run("docker", "volume", "ls", "-q", "--filter", label).split() == []
    with pytest.raises(httpx.TransportError):
        httpx.get(stack.url, timeout=2)
