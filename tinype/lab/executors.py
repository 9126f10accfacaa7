"""Where the lab's independent runs execute, behind one small interface:

    with make_executor(cfg) as ex:
        for result in ex.map_unordered(fn, jobs):   # fn(job) for every job, yielded as each finishes
            ...

Serial (this process), Processes (cfg.jobs spawned processes, each with its share of the cores) and
Dask (an existing scheduler at cfg.dask). fn and the jobs must be picklable; workers write their
results into cfg.out, which they all must reach.
"""
import contextlib
import multiprocessing
import os
import socket
import struct
from concurrent.futures import ProcessPoolExecutor, as_completed
from urllib.parse import urlparse

from ..errors import InvalidValue


class Serial:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def map_unordered(self, fn, jobs):
        for job in jobs:
            yield fn(job)


@contextlib.contextmanager
def _thread_env(threads):
    """Child processes inherit the environment: give each its share of the cores."""
    names = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    saved = {n: os.environ.get(n) for n in names}
    os.environ.update({n: str(threads) for n in names})
    try:
        yield
    finally:
        for n, v in saved.items():
            if v is None:
                os.environ.pop(n, None)
            else:
                os.environ[n] = v


class Processes:
    def __init__(self, workers):
        self.workers = workers

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def map_unordered(self, fn, jobs):
        jobs = list(jobs)
        if len(jobs) <= 1:
            yield from Serial().map_unordered(fn, jobs)
            return
        workers = min(self.workers, len(jobs))
        env = _thread_env(max(1, (os.cpu_count() or 1) // workers))
        env.__enter__()                   # workers start at submit() and read the environment then
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
        try:
            futures = [pool.submit(fn, job) for job in jobs]
            for fut in as_completed(futures):
                yield fut.result()
        except BaseException:
            # Ctrl-C, SIGTERM or a failed run: stop the workers now (their writes are atomic, and an
            # orphaned temporary is removed by the next run), not after every queued job
            for p in list((getattr(pool, "_processes", None) or {}).values()):
                p.terminate()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        finally:
            env.__exit__(None, None, None)
        pool.shutdown(wait=True)


def check_dask_address(address, timeout=5.0):
    """Before any work: something answers at `address`, and it greets like a Dask scheduler.

    A Dask scheduler speaks first on a new TCP connection (its handshake: an 8-byte little-endian
    frame count, then the frames); a web server or anything else waits for the client or says
    something else. Raises InvalidValue with what was found."""
    url = urlparse(address if "://" in address else "tcp://" + address)
    if url.scheme not in ("tcp", "tls") or not url.hostname or not url.port:
        raise InvalidValue(f"--dask {address!r} is not a scheduler address like tcp://host:8786")
    if url.scheme == "tls":
        return                                # encrypted: leave the handshake to distributed
    try:
        with socket.create_connection((url.hostname, url.port), timeout=timeout) as s:
            s.settimeout(timeout)
            try:
                first = s.recv(8)
            except TimeoutError:
                first = None
    except OSError as err:
        raise InvalidValue(f"cannot reach a Dask scheduler at {address!r}: {err.strerror or err}") from None
    if first is None:
        raise InvalidValue(f"{address} accepted a connection but did not greet like a Dask scheduler within "
                           f"{timeout:.0f} s (is it a web server or another service?); start one with "
                           f"`dask scheduler` and pass its tcp:// address")
    if len(first) < 8 or not 1 <= struct.unpack("<Q", first)[0] <= 1000:
        raise InvalidValue(f"{address} is not a Dask scheduler: it answered {first[:8]!r}; pass the "
                           f"tcp:// address `dask scheduler` prints")


def _dask_client(address):
    try:
        from distributed import Client
    except ImportError:
        raise InvalidValue("--dask needs Dask's distributed scheduler: pip install 'tinype[dask]' "
                           "(on this machine and on every worker)") from None
    check_dask_address(address)
    try:
        return Client(address, timeout="10s")
    except (OSError, TimeoutError) as err:
        raise InvalidValue(f"cannot reach a Dask scheduler at {address!r}: {err}") from None


class Dask:
    def __init__(self, address):
        self.address = address
        self.client = None

    def __enter__(self):
        self.client = _dask_client(self.address)
        return self

    def __exit__(self, *exc):
        self.client.close()
        return False

    def map_unordered(self, fn, jobs):
        from distributed import as_completed as dask_completed
        futures = self.client.map(fn, list(jobs), pure=False)
        for fut in dask_completed(futures):
            yield fut.result()


def make_executor(cfg):
    """The executor cfg asks for: Dask when cfg.dask, processes when cfg.jobs > 1, else serial."""
    if cfg.dask:
        return Dask(cfg.dask)
    if cfg.jobs > 1:
        return Processes(cfg.jobs)
    return Serial()


def check_executor(cfg):
    """Fail before any work when the executor cannot start (an unreachable or non-Dask scheduler)."""
    if cfg.dask:
        _dask_client(cfg.dask).close()
