"""`make bench-serve`: the HTTP service under a bounded load on loopback → artifacts/serve_bench.json.

Starts `python -m pipeline serve` on a free 127.0.0.1 port (its request log goes to serve_bench.log beside
the JSON), times start-up to the first ready /v1/health and to every worker's "warm" (its default models
loaded in the background), runs config.SERVE_BENCH["warmup_seconds"] of load
that is not counted, then each phase of config.SERVE_BENCH["phases"]: a fixed number of concurrent clients,
each on its own keep-alive connection, asking one after another for a random user's Top-N (default model,
N = 10) for a fixed time. Then it stops the service. An error is any answer that is not a 200 with N movies
for the user asked about, or no answer. The JSON records each phase's requests/s, latency percentiles
(p50/p95/p99/max, ms, as the client sees them) and errors, the start-up time, config.SERVE_TARGETS met or
not, the models served and when they were trained, and the load average. On a small shared machine other
work moves every timing, so it also records the CPU time the service's processes used per request and until
ready (psutil), which other work hardly moves. The client (plain asyncio, see Connection) runs on the
same cores as the service.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import numpy as np
import psutil
import typer

from pipeline import config
from pipeline.data.preprocess import Encoders
from pipeline.files import write_json
from pipeline.processes import free_port, stop_process
from pipeline.serving.recommender import RecommendError
from pipeline.serving.terminal import fail

REPO = config.REPO_DIR


def start_service(
    processed_dir: Path,
    models_dir: Path,
    port: int,
    log_path: Path,
    workers: int | None = None,
    threads: int | None = None,
) -> subprocess.Popen:
    """`python -m pipeline serve` on 127.0.0.1:port in a new process, its output appended to log_path."""
    command = [
        sys.executable,
        "-m",
        "pipeline",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--processed-dir",
        str(processed_dir),
        "--models-dir",
        str(models_dir),
    ]
    command += ["--workers", str(workers)] if workers else []
    command += ["--threads", str(threads)] if threads else []
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def wait_ready(port: int, process: subprocess.Popen, timeout: float) -> dict:
    """The first 200 answer of /v1/health, polled every 50 ms; RecommendError if the service exits or times out."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if process.poll() is not None:
            raise RecommendError(f"the service exited with code {process.returncode} before it was ready")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/health", timeout=5) as answer:
                return json.loads(answer.read())
        except OSError:
            time.sleep(0.05)
    raise RecommendError(f"the service was not ready after {timeout:.0f} s")


def wait_warm(port: int, process: subprocess.Popen, workers: int, timeout: float) -> None:
    """Until every worker process has said `"warm": true` on /v1/health (its default models loaded and traced
    in the background after ready); RecommendError if the service exits or times out."""
    deadline, warm = time.perf_counter() + timeout, set()
    while len(warm) < workers:
        if process.poll() is not None:
            raise RecommendError(f"the service exited with code {process.returncode} while warming up")
        if time.perf_counter() > deadline:
            raise RecommendError(f"the service was not warm after {timeout:.0f} s")
        health = wait_ready(port, process, timeout)
        if health["warm"]:
            warm.add(health["pid"])
        time.sleep(0.05)


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU seconds used so far by process `root` and its descendants (those still running)."""
    try:
        tree = [psutil.Process(root), *psutil.Process(root).children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for process in tree:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


class Connection:
    """One keep-alive HTTP/1.1 connection that sends GETs and reads answers with a Content-Length (all this
    service sends). Written out rather than httpx: on a 2-core machine the load generator shares the cores
    with the service, and this costs ~0.2 ms of CPU per request where httpx's AsyncClient costs ~2 ms."""

    def __init__(self, host: str, port: int):
        self.host, self.port, self.streams = host, port, None

    async def get(self, target: str) -> tuple[int, bytes]:
        if self.streams is None:
            self.streams = await asyncio.open_connection(self.host, self.port)
        reader, writer = self.streams
        writer.write(f"GET {target} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n\r\n".encode())
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").lower().split("\r\n")
        headers = dict(line.split(":", 1) for line in head[1:] if ":" in line)
        body = await reader.readexactly(int(headers["content-length"]))
        if headers.get("connection", "").strip() == "close":
            self.close()
        return int(head[0].split()[1]), body

    def close(self) -> None:
        if self.streams is not None:
            self.streams[1].close()
            self.streams = None


async def load(
    host: str,
    port: int,
    users: list[int],
    clients: int,
    seconds: float,
    n: int,
    seed: int,
    service_pid: int | None = None,
    query: str = "",
) -> dict:
    """`clients` concurrent clients, each on its own connection, asking for random users' Top-n until `seconds`
    have passed (requests in flight then are finished and counted). With service_pid, also the CPU time the
    service (and this client) used per request: on a shared machine, what a request costs, whatever share of
    the cores it got."""
    latencies, outcomes = [], Counter()
    started, client_cpu = time.perf_counter(), time.process_time()
    service_cpu = tree_cpu_seconds(service_pid) if service_pid else None
    deadline = started + seconds

    async def one_client(index: int) -> None:
        rng, connection = random.Random(seed * 100_003 + index), Connection(host, port)
        while time.perf_counter() < deadline:
            user = rng.choice(users)
            sent = time.perf_counter()
            try:
                target = f"/v1/users/{user}/recommendations?n={n}{'&' + query if query else ''}"
                status, body = await asyncio.wait_for(connection.get(target), 60)
                answer = json.loads(body) if status == 200 else {}
                ok = answer.get("user_id") == user and len(answer.get("items", ())) == n
                outcomes["ok" if ok else f"status {status}" if status != 200 else "wrong answer"] += 1
            except (TimeoutError, OSError, asyncio.IncompleteReadError, KeyError, ValueError) as error:
                outcomes[type(error).__name__] += 1
                connection.close()
            latencies.append(time.perf_counter() - sent)
        connection.close()

    await asyncio.gather(*(one_client(index) for index in range(clients)))
    elapsed = time.perf_counter() - started
    client_cpu = time.process_time() - client_cpu
    service_cpu = tree_cpu_seconds(service_pid) - service_cpu if service_pid else None
    ms = np.asarray(latencies) * 1000
    return {
        "clients": clients,
        "query": query or None,
        "seconds": round(elapsed, 2),
        "requests": len(ms),
        "errors": len(ms) - outcomes["ok"],
        "outcomes": dict(outcomes),
        "requests_per_s": round(len(ms) / elapsed, 1),
        "latency_ms": {
            **{f"p{q}": round(float(np.percentile(ms, q)), 1) for q in (50, 95, 99)},
            "max": round(float(ms.max()), 1),
            "mean": round(float(ms.mean()), 1),
        }
        if len(ms)
        else None,
        "service_cpu_ms_per_request": round(1000 * service_cpu / len(ms), 2) if service_pid and len(ms) else None,
        "client_cpu_ms_per_request": round(1000 * client_cpu / len(ms), 2) if len(ms) else None,
        "service_cores_used": round(service_cpu / elapsed, 2) if service_pid else None,
        # What all the machine's cores could answer at this CPU cost, service and client together, if nothing
        # else ran: the ceiling the requests/s above approach on an idle machine.
        "cpu_bound_requests_per_s": round(len(ms) * os.cpu_count() / (service_cpu + client_cpu), 1)
        if service_pid and len(ms)
        else None,
    }


def bench_serve(
    processed_dir: Path,
    models_dir: Path,
    out: Path,
    phases=config.SERVE_BENCH["phases"],
    warmup_seconds: float = config.SERVE_BENCH["warmup_seconds"],
    n: int = config.SERVE_BENCH["n"],
    seed: int = config.SERVE_BENCH["seed"],
    workers: int | None = None,
    threads: int | None = None,
    echo=print,
) -> dict:
    """Start the service, time start-up, load it phase by phase, stop it; returns (and writes to `out`) the
    figures."""
    users = [int(user) for user in Encoders.load(processed_dir / "encoders.json").classes["user_id"]]
    port = free_port()
    log_path = out.with_suffix(".log")
    log_path.unlink(missing_ok=True)
    load_before = os.getloadavg()
    started = time.perf_counter()
    process = start_service(processed_dir, models_dir, port, log_path, workers, threads)
    try:
        health = wait_ready(port, process, config.SERVE_BENCH["ready_timeout_s"])
        startup, startup_cpu = time.perf_counter() - started, tree_cpu_seconds(process.pid)
        wait_warm(port, process, health["workers"], config.SERVE_BENCH["ready_timeout_s"])
        warm = time.perf_counter() - started
        echo(
            f"service ready in {startup:.1f} s, its default models warm in {warm:.1f} s ({health['workers']} "
            f"workers × {health['threads']} threads); warming up {warmup_seconds:g} s"
        )
        if warmup_seconds:
            asyncio.run(load("127.0.0.1", port, users, phases[0]["clients"], warmup_seconds, n, seed + 1))
        results = []
        for phase in phases:
            query = phase.get("query", "")
            results.append(
                asyncio.run(
                    load("127.0.0.1", port, users, phase["clients"], phase["seconds"], n, seed, process.pid, query)
                )
            )
            done = results[-1]
            echo(
                f"{done['clients']:>3} clients × {phase['seconds']} s{' with ' + query if query else ''}: "
                f"{done['requests_per_s']:.0f} requests/s, "
                f"p50/p95/p99 {done['latency_ms']['p50']}/{done['latency_ms']['p95']}/{done['latency_ms']['p99']} ms, "
                f"{done['errors']} errors; service CPU {done['service_cpu_ms_per_request']} ms per request on "
                f"{done['service_cores_used']} cores"
            )
        crashed = process.poll() is not None
    finally:
        stop_process(process)
    # Every worker logs one "ready" line when it starts, so more lines than workers mean restarted workers.
    ready_lines = sum('"event":"ready"' in line for line in log_path.read_text(errors="replace").splitlines())
    target = config.SERVE_TARGETS
    main = next((result for result in results if result["clients"] == target["clients"] and not result["query"]), None)
    report = {
        "what": "make bench-serve (pipeline/bench/serve_bench.py): the HTTP service on loopback, random users' Top-N",
        "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "request": f"GET /v1/users/<random user>/recommendations?n={n} (default model: "
        f"{config.model_name(config.DEFAULT_ARCHITECTURE, config.DEFAULT_MODE)})",
        "startup_to_ready_s": round(startup, 2),
        # CPU seconds the service's processes used until ready; on a busy machine start-up takes longer than
        # this divided over the cores, on an idle one about that long.
        "startup_cpu_s": round(startup_cpu, 1),
        "service_startup_s": health["startup_seconds"],
        # Ready answers default requests (the precomputed tables); warm: the default models loaded and traced
        # in the background too, in every worker. The load phases start when warm.
        "startup_to_warm_s": round(warm, 2),
        "workers": health["workers"],
        "threads_per_worker": health["threads"],
        "warmup_seconds": warmup_seconds,
        "phases": results,
        "crashed": crashed,
        "worker_restarts": ready_lines - health["workers"],
        "targets": {
            **target,
            "met": None
            if main is None
            else {
                "errors": main["errors"] <= target["errors"],
                "p99_ms": main["latency_ms"]["p99"] <= target["p99_ms"],
                "requests_per_s": main["requests_per_s"] >= target["requests_per_s"],
                "startup_s": startup <= target["startup_s"],
                "no_crash": not crashed and ready_lines == health["workers"],
            },
        },
        "models": {name: status["trained_at"] for name, status in health["models"].items() if status["trained_at"]},
        "data": health["data"],
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        },
        "service_log": str(log_path),
    }
    write_json(out, report)
    return report


def bench_serve_command(
    processed_dir: Path = typer.Option(config.PROCESSED_DIR),
    models_dir: Path = typer.Option(config.MODELS_DIR),
    out: Path = typer.Option(config.ARTIFACTS_DIR / "serve_bench.json"),
    clients: list[int] = typer.Option(
        None,
        "--clients",
        min=1,
        help="Concurrent clients of a phase (repeat for several phases); default: config.SERVE_BENCH.",
    ),
    seconds: float = typer.Option(None, min=1, help="Length of each phase; default: config.SERVE_BENCH."),
    warmup: float = typer.Option(config.SERVE_BENCH["warmup_seconds"], min=0, help="Uncounted load first, seconds."),
    workers: int = typer.Option(None, min=1, help="The service's worker processes; default: config.SERVE."),
    threads: int = typer.Option(None, min=1, help="Recommender threads per worker; default: config.SERVE."),
) -> None:
    """Start the service, load it with concurrent clients on loopback, stop it; write artifacts/serve_bench.json."""
    phases = (
        [{"clients": count, "seconds": seconds or config.SERVE_BENCH["phases"][0]["seconds"]} for count in clients]
        if clients
        else [{**phase, "seconds": seconds or phase["seconds"]} for phase in config.SERVE_BENCH["phases"]]
    )
    try:
        report = bench_serve(
            processed_dir, models_dir, out, phases, warmup, workers=workers, threads=threads, echo=typer.echo
        )
    except RecommendError as error:
        fail(error)
    met = report["targets"]["met"]
    typer.echo(
        f"start-up to ready {report['startup_to_ready_s']} s; targets at {config.SERVE_TARGETS['clients']} "
        f"clients: {'all met' if met and all(met.values()) else met}; wrote {out}"
    )
