"""A real Docker engine for the deployment tests: the images are built once per session
(on bases made from Debian's packages by docker/local/prepare) and shared by every test.

Where the engine cannot run the tests skip with the reason, except in CI: .ci/run starts
dockerd and sets DNE_REQUIRE_DOCKER=1, and there a missing engine fails them.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

ROOT = Path(__file__).resolve().parents[2]
REQUIRED = os.environ.get("DNE_REQUIRE_DOCKER") == "1"
T = TypeVar("T")


def run(
    *args: str, env: dict[str, str] | None = None, timeout: float = 600, input_text: str = ""
) -> str:
    """A command from the repository root; its output, or a failure that shows it."""
    done = subprocess.run(
        args, cwd=ROOT, env=env, input=input_text, capture_output=True, text=True, timeout=timeout
    )
    if done.returncode:
        pytest.fail(f"{' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 90) -> T:
    """Polls ``probe`` until it returns something, for at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while (value := probe()) is None:
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.5)
    return value


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def engine_problem() -> str | None:
    """Why Docker cannot run the tests here, or None."""
    if shutil.which("docker") is None:
        return "no docker command"
    info = subprocess.run(["docker", "info"], capture_output=True, text=True)
    if info.returncode:
        return f"no Docker engine answers: {info.stderr.strip().splitlines()[-1:]}"
    for tool in ("mmdebstrap",):
        if shutil.which(tool) is None:
            return f"no {tool} (apt-get install {tool})"
    if os.geteuid() != 0:
        return "docker/local/prepare needs root (mmdebstrap, docker import)"
    return None


@pytest.fixture(scope="session")
def docker_engine() -> None:
    if problem := engine_problem():
        if REQUIRED:
            pytest.fail(f"DNE_REQUIRE_DOCKER=1 but {problem}")
        pytest.skip(problem)


def compose_command() -> list[str]:
    """``docker compose`` where the plugin exists (current Docker), else ``docker-compose``."""
    plugin = subprocess.run(["docker", "compose", "version"], capture_output=True)
    if plugin.returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    pytest.fail("neither docker compose nor docker-compose is installed")


@dataclass(frozen=True)
class Images:
    api: str
    train: str


@pytest.fixture(scope="session")
def images(docker_engine: None) -> Iterator[Images]:
    """The API and training images, built offline on the local Python base."""
    started = time.monotonic()
    run(str(ROOT / "docker/local/prepare"))
    # Tags of this session's own: another run on the same engine keeps its images.
    built = Images(api=f"dne-api:test-{os.getpid()}", train=f"dne-train:test-{os.getpid()}")
    for target, tag in (("api", built.api), ("train", built.train)):
        run(
            *("docker", "build", "--quiet", "-f", "docker/Dockerfile", "--target", target),
            *("-t", tag, "--build-arg", "BASE_IMAGE=dne-local/python:3.11"),
            *("--build-arg", "PIP_NO_INDEX=1", "."),
        )
    print(f"\nimages ready after {time.monotonic() - started:.0f} s")
    yield built
    subprocess.run(["docker", "rmi", built.train, built.api], capture_output=True)
