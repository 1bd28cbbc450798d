"""Child processes measured by the operating system's own accounting: exit code, wall time and peak RSS
(os.wait4's ru_maxrss of that process alone, not of this one), and free loopback ports for services and
workers started on this machine, stopping a child politely, and the machine's load average that benchmarks
write next to every figure (the machine may be shared)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

LOOPBACK = "127.0.0.1"


def load_average() -> list[float]:
    """The 1-, 5- and 15-minute load averages, rounded to 0.01."""
    return [round(value, 2) for value in os.getloadavg()]


def free_ports(count: int, host: str = LOOPBACK) -> list[int]:
    """Ports the OS has free on `host` now (bound, read and released; TensorFlow binds them next)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((host, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def free_port(host: str = LOOPBACK) -> int:
    return free_ports(1, host)[0]


def stop_process(process: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM (a service shuts down gracefully), then SIGKILL if it is still there after `timeout` seconds."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_measured(process: subprocess.Popen, block: bool) -> dict | None:
    """Reap `process` (os.wait4, which also gives its peak RSS); None while it still runs."""
    pid, status, usage = os.wait4(process.pid, 0 if block else os.WNOHANG)
    if pid == 0:
        return None
    process.returncode = os.waitstatus_to_exitcode(status)
    return {"pid": process.pid, "exit_code": process.returncode, "peak_rss_gib": usage.ru_maxrss / 2**20}


def run_measured(arguments: list[str], env: dict | None = None) -> dict:
    """Run `python <arguments>` to the end: exit code, wall seconds and peak RSS (GiB) of that process."""
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, *arguments], env=env)
    result = wait_measured(process, block=True)
    return {**result, "seconds": time.perf_counter() - started}


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"
