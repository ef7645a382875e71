"""Wall time and peak memory of a piece of work, counting every process it spawns (JVM, workers).

Two memory figures: RSS summed over the process tree (what `ps` and `top` show), and PSS, where a
page shared by several processes of the tree (a forked worker's inherited libraries, a JVM's
short-lived fork) counts once, split between them. Summed RSS counts such pages once per process,
so it overstates any side that forks, and a JVM's fork caught in a sample adds the whole JVM again.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass

import psutil


@dataclass
class Measurement:
    seconds: float = 0.0
    peak_rss_mb: float = 0.0
    peak_pss_mb: float = 0.0


def tree_memory(root: psutil.Process, pss: bool = True) -> tuple[int, int]:
    """(RSS, PSS) in bytes of ``root`` and all its descendants (PSS is RSS where smaps is unreadable)."""
    rss_total = pss_total = 0
    try:
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0, 0
    for p in procs:
        try:
            if pss:
                info = p.memory_full_info()
                rss_total, pss_total = rss_total + info.rss, pss_total + info.pss
            else:
                rss = p.memory_info().rss
                rss_total, pss_total = rss_total + rss, pss_total + rss
        except psutil.AccessDenied:
            rss = p.memory_info().rss
            rss_total, pss_total = rss_total + rss, pss_total + rss
        except psutil.NoSuchProcess:
            pass
    return rss_total, pss_total


class _Sampler:
    def __init__(self, root: psutil.Process, interval: float) -> None:
        self.root, self.interval, self.stop = root, interval, threading.Event()
        self.peak = [0, 0]
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            self.take()
            self.stop.wait(self.interval)

    def take(self) -> None:
        rss, pss = tree_memory(self.root)
        self.peak = [max(self.peak[0], rss), max(self.peak[1], pss)]

    def finish(self, m: Measurement) -> None:
        self.stop.set()
        self.thread.join()
        m.peak_rss_mb, m.peak_pss_mb = self.peak[0] / 2**20, self.peak[1] / 2**20


@contextmanager
def measure(interval: float = 0.1):
    """Samples the memory of this process and all its descendants while the block runs."""
    m = Measurement()
    s = _Sampler(psutil.Process(os.getpid()), interval)
    s.thread.start()
    t0 = time.perf_counter()
    try:
        yield m
    finally:
        m.seconds = time.perf_counter() - t0
        s.take()
        s.finish(m)


def run_measured(cmd: list[str], interval: float = 0.1, **popen) -> Measurement:
    """Run ``cmd`` to completion and measure its own process tree only: not this process, which
    may hold the benchmark's corpus (that memory is no side's)."""
    m = Measurement()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, **popen)
    s = _Sampler(psutil.Process(proc.pid), interval)
    s.thread.start()
    rc = proc.wait()
    m.seconds = time.perf_counter() - t0
    s.finish(m)
    if rc:
        raise subprocess.CalledProcessError(rc, cmd)
    return m
