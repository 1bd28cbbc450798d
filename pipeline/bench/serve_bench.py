"""`make bench-serve`: the HTTP service under load on loopback, LiteRT and Keras side by side (serve_bench.json).

For each runtime (config.Runtime: the models' LiteRT files, then their .keras files) it starts `python -m pipeline
serve --runtime <runtime>` on a free 127.0.0.1 port (the request log goes to serve_bench.log beside the JSON), times
start-up to the first ready /v1/health and until every worker has answered warm, measures each worker's RSS, runs
SERVE_BENCH["warmup_seconds"] (config_serving.py) of uncounted load, then each phase of SERVE_BENCH["phases"]: `wrk`
(Debian's HTTP load generator, written in C, so that the client takes little of the two cores the service runs
on) keeps a fixed number of keep-alive connections busy for a fixed time with one kind of request:

  precomputed   GET a random user's default Top-10 (answered from the precomputed table)
  month         GET a random user's Top-10 in month 1 (scored when asked: retrieval + ranking)
  new person    POST /v1/recommendations with one of config_serving.SERVE_BENCH["liked_lists"] (scored when asked)

A phase with `runs` is repeated against the same service, to see whether throughput depends on how connections
were spread. An error is a non-2xx answer or a socket error. The JSON records each phase's requests/s, latency
percentiles (p50/p90/p99/max, ms, as wrk sees them), errors and the service's CPU time per request (psutil),
LiteRT ÷ Keras ratios, config_serving.SERVE_TARGETS met or not, and the load average.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import typer

from pipeline import config, config_serving
from pipeline.data.fields import Encoders
from pipeline.files import write_json
from pipeline.processes import free_port, stop_process
from pipeline.serving.errors import RecommendError
from pipeline.serving.terminal import fail

REPO = config.REPO_DIR


def start_service(
    processed_dir: Path,
    models_dir: Path,
    port: int,
    log_path: Path,
    workers: int | None = None,
    threads: int | None = None,
    runtime: str | None = None,
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
    command += ["--runtime", runtime] if runtime else []
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


WRK_SCRIPT = """
local targets = {%s}
local bodies = {%s}
local counter = 0
request = function()
  counter = counter + 1
  local pick = math.random(1, #targets)
  if #bodies > 0 then
    return wrk.format("POST", targets[1], {["Content-Type"] = "application/json"}, bodies[pick])
  end
  return wrk.format("GET", targets[pick])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRK {"requests": %%d, "duration_us": %%d, "non_2xx": %%d, "socket_errors": %%d, ' ..
    '"p50_us": %%d, "p90_us": %%d, "p99_us": %%d, "max_us": %%d, "mean_us": %%f}\\n',
    summary.requests, summary.duration, summary.errors.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
"""


def wrk_script(kind: str, users: list[int], n: int, seed: int, liked_lists) -> str:
    """The Lua script that makes wrk send requests of `kind` (its random picks are seeded per thread)."""
    rng = random.Random(seed)
    if kind == "new person":
        bodies = [json.dumps({"liked": list(liked), "n": n}) for liked in liked_lists]
        return WRK_SCRIPT % ('"/v1/recommendations"', ", ".join(f"[[{body}]]" for body in bodies))
    query = "&month=1" if kind == "month" else ""
    picked = rng.sample(users, min(len(users), 2000))
    return WRK_SCRIPT % (", ".join(f'"/v1/users/{user}/recommendations?n={n}{query}"' for user in picked), "")


def wrk_phase(port: int, script: Path, clients: int, seconds: float, service_pid: int) -> dict:
    """wrk with `clients` connections (2 threads) for `seconds`: its figures and the service's CPU per request."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RecommendError("bench-serve needs wrk (Debian: `apt-get install wrk`)")
    service_cpu, started = tree_cpu_seconds(service_pid), time.perf_counter()
    command = [wrk, "-t2", f"-c{clients}", f"-d{seconds:g}s", "--timeout", "10s", "-s", str(script)]
    done = subprocess.run([*command, f"http://127.0.0.1:{port}"], capture_output=True, text=True)
    elapsed, service_cpu = time.perf_counter() - started, tree_cpu_seconds(service_pid) - service_cpu
    line = next((line for line in done.stdout.splitlines() if line.startswith("WRK ")), None)
    if done.returncode != 0 or line is None:
        raise RecommendError(f"wrk failed: {(done.stderr or done.stdout).strip()[-300:]}")
    figures = json.loads(line[4:])
    requests = figures["requests"]
    return {
        "clients": clients,
        "seconds": round(figures["duration_us"] / 1e6, 2),
        "requests": requests,
        "errors": figures["non_2xx"] + figures["socket_errors"],
        "requests_per_s": round(requests / (figures["duration_us"] / 1e6), 1),
        "latency_ms": {q: round(figures[f"{q}_us"] / 1000, 1) for q in ("p50", "p90", "p99", "max", "mean")},
        "service_cpu_ms_per_request": round(1000 * service_cpu / requests, 2) if requests else None,
        "service_cores_used": round(service_cpu / elapsed, 2),
    }


def worker_rss_mib(root: int) -> list[float]:
    """RSS (MiB) of each worker process of the service whose supervisor is `root`."""
    try:
        children = psutil.Process(root).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    workers = [child for child in children if "spawn_main" in " ".join(child.cmdline())] or children
    return [round(child.memory_info().rss / 2**20) for child in workers]


def serve_runtime(
    runtime: str,
    processed_dir: Path,
    models_dir: Path,
    log_path: Path,
    phases,
    warmup_seconds,
    n,
    seed,
    workers,
    threads,
    echo,
) -> dict:
    """Start the service with `runtime`, load it phase by phase, stop it: the figures of that runtime."""
    users = [int(user) for user in Encoders.load(processed_dir / "encoders.json").classes["user_id"]]
    port = free_port()
    started = time.perf_counter()
    process = start_service(processed_dir, models_dir, port, log_path, workers, threads, runtime)
    scripts = log_path.parent / f".wrk-{os.getpid()}"
    scripts.mkdir(parents=True, exist_ok=True)
    try:
        health = wait_ready(port, process, config_serving.SERVE_BENCH["ready_timeout_s"])
        ready = time.perf_counter() - started
        wait_warm(port, process, health["workers"], config_serving.SERVE_BENCH["ready_timeout_s"])
        warm = time.perf_counter() - started
        echo(f"[{runtime}] ready in {ready:.1f} s, every worker warm in {warm:.1f} s; warming up {warmup_seconds:g} s")
        for kind in ("precomputed", "month", "new person"):
            script = scripts / f"{kind.replace(' ', '_')}.lua"
            script.write_text(wrk_script(kind, users, n, seed, config_serving.SERVE_BENCH["liked_lists"]))
            if warmup_seconds:
                wrk_phase(port, script, phases[0]["clients"], warmup_seconds, process.pid)
        results = []
        for phase in phases:
            script = scripts / f"{phase['kind'].replace(' ', '_')}.lua"
            for run in range(phase.get("runs", 1)):
                done = {
                    "kind": phase["kind"],
                    "run": run + 1,
                    **wrk_phase(port, script, phase["clients"], phase["seconds"], process.pid),
                }
                results.append(done)
                echo(
                    f"[{runtime}] {phase['kind']:<11} {done['clients']:>3} connections × {done['seconds']:g} s: "
                    f"{done['requests_per_s']:.0f} requests/s, p50/p99 {done['latency_ms']['p50']}/"
                    f"{done['latency_ms']['p99']} ms, {done['errors']} errors; service CPU "
                    f"{done['service_cpu_ms_per_request']} ms per request"
                )
        rss = worker_rss_mib(process.pid)
        crashed = process.poll() is not None
    finally:
        stop_process(process)
        shutil.rmtree(scripts, ignore_errors=True)
    return {
        "startup_to_ready_s": round(ready, 2),
        "startup_to_warm_s": round(warm, 2),
        "service_startup_s": health["startup_seconds"],
        "workers": health["workers"],
        "threads_per_worker": health["threads"],
        "worker_rss_mib": rss,
        "phases": results,
        "crashed": crashed,
        "models": {name: status["trained_at"] for name, status in health["models"].items() if status["trained_at"]},
        "data": health["data"],
    }


def summary(phases: list[dict]) -> dict:
    """Per kind of request at config_serving.SERVE_TARGETS' clients: the median run's requests/s and p99, the worst
    errors, and the slowest ÷ fastest of its runs."""
    out = {}
    for kind in dict.fromkeys(phase["kind"] for phase in phases):
        runs = [p for p in phases if p["kind"] == kind and p["clients"] == config_serving.SERVE_TARGETS["clients"]]
        if not runs:
            continue
        rates = sorted(run["requests_per_s"] for run in runs)
        out[kind] = {
            "requests_per_s": rates[len(rates) // 2],
            "p99_ms": sorted(run["latency_ms"]["p99"] for run in runs)[len(runs) // 2],
            "errors": sum(run["errors"] for run in runs),
            "runs": len(runs),
            "slowest_over_fastest": round(rates[0] / rates[-1], 2),
        }
    return out


def targets_met(lite: dict, summaries: dict) -> dict:
    target, kinds = config_serving.SERVE_TARGETS, summaries
    scored = [kinds[kind] for kind in ("month", "new person") if kind in kinds]
    met = {
        "scored_requests_per_s": all(k["requests_per_s"] >= target["scored_requests_per_s"] for k in scored),
        "scored_p99_ms": all(k["p99_ms"] <= target["p99_ms"] for k in scored),
        "errors": all(k["errors"] <= target["errors"] for k in kinds.values()),
        "startup_s": lite["startup_to_warm_s"] <= target["startup_s"],
        "worker_rss_mib": bool(lite["worker_rss_mib"]) and max(lite["worker_rss_mib"]) <= target["worker_rss_mib"],
        "no_crash": not lite["crashed"],
    }
    if "precomputed" in kinds:
        met["precomputed_requests_per_s"] = (
            kinds["precomputed"]["requests_per_s"] >= target["precomputed_requests_per_s"]
        )
        met["precomputed_steady"] = kinds["precomputed"]["slowest_over_fastest"] >= target["slowest_over_fastest"]
    return met


def bench_serve(
    processed_dir: Path,
    models_dir: Path,
    out: Path,
    phases=config_serving.SERVE_BENCH["phases"],
    warmup_seconds: float = config_serving.SERVE_BENCH["warmup_seconds"],
    n: int = config_serving.SERVE_BENCH["n"],
    seed: int = config_serving.SERVE_BENCH["seed"],
    workers: int | None = None,
    threads: int | None = None,
    runtimes=tuple(runtime.value for runtime in config.Runtime),
    echo=print,
) -> dict:
    """Each runtime's service started, loaded phase by phase and stopped; returns (and writes to `out`) the figures."""
    log_path = out.with_suffix(".log")
    log_path.unlink(missing_ok=True)
    load_before = os.getloadavg()
    measured = {
        runtime: serve_runtime(
            runtime, processed_dir, models_dir, log_path, phases, warmup_seconds, n, seed, workers, threads, echo
        )
        for runtime in runtimes
    }
    summaries = {runtime: summary(figures["phases"]) for runtime, figures in measured.items()}
    report = {
        "what": "make bench-serve (pipeline/bench/serve_bench.py): the HTTP service on loopback under wrk",
        "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "default_model": config.model_name(config.DEFAULT_ARCHITECTURE, config.DEFAULT_MODE),
        "n": n,
        "warmup_seconds": warmup_seconds,
        "runtimes": measured,
        "summary": summaries,
        "targets": {
            **config_serving.SERVE_TARGETS,
            "met_by_litert": targets_met(measured["litert"], summaries["litert"]) if "litert" in measured else None,
        },
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        },
        "service_log": str(log_path),
    }
    if {"litert", "keras"} <= set(summaries):
        report["litert_over_keras"] = {
            kind: {
                "requests_per_s": round(figures["requests_per_s"] / summaries["keras"][kind]["requests_per_s"], 2),
                "p99_ms": round(figures["p99_ms"] / summaries["keras"][kind]["p99_ms"], 2),
            }
            for kind, figures in summaries["litert"].items()
            if kind in summaries["keras"] and summaries["keras"][kind]["requests_per_s"]
        }
    write_json(out, report)
    return report


def bench_serve_command(
    processed_dir: Path = typer.Option(config.PROCESSED_DIR),
    models_dir: Path = typer.Option(config.MODELS_DIR),
    out: Path = typer.Option(config.ARTIFACTS_DIR / "serve_bench.json"),
    seconds: float = typer.Option(None, min=1, help="Length of each phase; default: config_serving.SERVE_BENCH."),
    warmup: float = typer.Option(
        config_serving.SERVE_BENCH["warmup_seconds"], min=0, help="Uncounted load first, seconds."
    ),
    workers: int = typer.Option(None, min=1, help="The service's worker processes; default: config_serving.SERVE."),
    threads: int = typer.Option(None, min=1, help="Recommender threads per worker; default: config_serving.SERVE."),
    runtime: list[config.Runtime] = typer.Option(None, help="Only this runtime (repeatable); default: both."),
) -> None:
    """Start the service (LiteRT, then Keras), load it with wrk on loopback, stop it → artifacts/serve_bench.json."""
    phases = [{**phase, "seconds": seconds or phase["seconds"]} for phase in config_serving.SERVE_BENCH["phases"]]
    runtimes = [choice.value for choice in runtime] if runtime else [choice.value for choice in config.Runtime]
    try:
        report = bench_serve(
            processed_dir,
            models_dir,
            out,
            phases,
            warmup,
            workers=workers,
            threads=threads,
            runtimes=runtimes,
            echo=typer.echo,
        )
    except RecommendError as error:
        fail(error)
    met = report["targets"]["met_by_litert"]
    typer.echo(
        f"targets (LiteRT, {config_serving.SERVE_TARGETS['clients']} connections): "
        f"{'all met' if met and all(met.values()) else met}; wrote {out}"
    )
