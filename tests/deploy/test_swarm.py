"""deploy/swarm/stack.yml on a one-node swarm: a new image rolled out under load, with no
failed request. Load goes only to the load balancer's port, through 127.0.0.1."""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from tests.deploy.conftest import Images, free_port, run, wait_for

pytestmark = pytest.mark.slow
STACK = f"dne-swarm-{os.getpid()}"
CLIENTS = 4
MAX_REQUESTS = 20_000  # per client: the load stops by itself even if the rollout hangs
MAX_SECONDS = 240


def swarm_state() -> str:
    return run("docker", "info", "--format", "{{.Swarm.LocalNodeState}}").strip()


@pytest.fixture(scope="module")
def swarm(images: Images) -> Iterator[None]:
    if swarm_state() != "inactive":
        pytest.skip("this engine is already part of a swarm; the test makes and leaves its own")
    run("docker", "swarm", "init", "--advertise-addr", "127.0.0.1")
    try:
        yield
    finally:
        run("docker", "swarm", "leave", "--force")


@pytest.fixture(scope="module")
def new_version(images: Images) -> Iterator[str]:
    """A second image of the API (a new label: a new image id, as a new release has)."""
    tag = f"{images.api}-v2"
    dockerfile = f"FROM {images.api}\nLABEL org.opencontainers.image.version=2\n"
    done = run("docker", "build", "--quiet", "-t", tag, "-", input_text=dockerfile)
    assert done.strip()
    yield tag
    run("docker", "rmi", tag)


class Load:
    """Clients requesting pinned seeds (painted and cached) until told to stop."""

    def __init__(self, url: str) -> None:
        self.url, self.stop = url, threading.Event()
        self.outcomes: Counter[str] = Counter()
        self.failures: list[str] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.client, args=(i,)) for i in range(CLIENTS)]

    def client(self, index: int) -> None:
        deadline = time.monotonic() + MAX_SECONDS
        with httpx.Client(base_url=self.url, timeout=10) as http:
            for n in range(MAX_REQUESTS):
                if self.stop.is_set() or time.monotonic() > deadline:
                    return
                try:
                    r = http.get(f"/models/emoji/1/seed/{index * MAX_REQUESTS + n % 500}")
                    outcome = str(r.status_code)
                    failure = None if r.status_code == 200 else f"{r.status_code} {r.text[:80]}"
                except httpx.HTTPError as exc:
                    outcome, failure = type(exc).__name__, repr(exc)
                with self.lock:
                    self.outcomes[outcome] += 1
                    if failure:
                        self.failures.append(failure)

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()


def service_images(service: str) -> list[str]:
    tasks = run(
        "docker",
        "service",
        "ps",
        service,
        "--filter",
        "desired-state=running",
        "--format",
        "{{.Image}}",
    )
    return sorted(tasks.split())


def test_rolling_update_under_load_fails_no_request(
    swarm: None, images: Images, new_version: str
) -> None:
    port = free_port()
    env = {**os.environ, "DNE_API_IMAGE": images.api, "DNE_PORT": str(port)}
    files = ["-c", "deploy/swarm/stack.yml", "-c", "docker/local/stack.local.yml"]
    run("docker", "stack", "deploy", *files, STACK, env=env)
    try:
        url = f"http://127.0.0.1:{port}"

        def serving() -> bool | None:
            try:
                return httpx.get(f"{url}/readyz", timeout=2).status_code == 200 or None
            except httpx.HTTPError:
                return None

        wait_for("the stack to serve", serving, timeout=120)
        assert service_images(f"{STACK}_api") == [images.api] * 2
        with Load(url) as load:
            time.sleep(2)
            run(
                "docker",
                "service",
                "update",
                "--detach=false",
                "--quiet",
                "--image",
                new_version,
                f"{STACK}_api",
                timeout=MAX_SECONDS,
            )
            time.sleep(2)
        assert service_images(f"{STACK}_api") == [new_version] * 2
        assert load.failures == [], load.outcomes
        assert load.outcomes["200"] >= 200, load.outcomes  # the rollout really was under load
        print(f"\nrollout under load: {dict(load.outcomes)}")
    finally:
        run("docker", "stack", "rm", STACK)
        wait_for(
            "the stack's containers to go",
            lambda: (
                not run(
                    "docker", "ps", "-aq", "--filter", f"label=com.docker.stack.namespace={STACK}"
                ).split()
                or None
            ),
        )
