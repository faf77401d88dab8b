"""Each property under a time and memory budget, and never an exception out of the checker.

The properties of one loss run in a forked worker process, one after the other, sharing the checker
(its split into pieces, its memo of verdicts). The parent enforces each property's wall-clock budget:
past it the worker is killed, the property is ``unknown (timed out)`` and a fresh worker (forked from
the parent again, seeded with the verdicts so far) takes the remaining properties. The worker lowers its
own address-space limit (``resource.setrlimit(RLIMIT_AS)``) to its current size plus the memory budget
before each property; an allocation past it is ``unknown (memory budget exceeded)``. Sympy can sit in
long C and Python loops that no cooperative deadline reaches; killing a process always works.

Where ``os.fork`` is missing (Windows) the properties run in this process, with a SIGALRM deadline when
this is the main thread, and no memory limit.
"""

from __future__ import annotations

import os
import pickle
import select
import signal
import struct
import threading
import time
import warnings

from .verdict import Verdict, unknown

DEFAULT_TIMEOUT = 10.0      # seconds per property (LOSSC_CHECK_TIMEOUT overrides it)
DEFAULT_MEMORY_MB = 2048    # MiB of address space a property may add


def default_timeout() -> float:
    """The per-property budget when none is given: $LOSSC_CHECK_TIMEOUT seconds if set, else 10."""
    text = os.environ.get("LOSSC_CHECK_TIMEOUT", "").strip()
    try:
        value = float(text) if text else DEFAULT_TIMEOUT
    except ValueError:
        return DEFAULT_TIMEOUT
    return value if value > 0 else DEFAULT_TIMEOUT


def failed(err: BaseException) -> Verdict:
    """The verdict of a property whose check raised: unknown, with the exception's type and message."""
    text = str(err)
    if len(text) > 300:
        text = text[:297] + "..."
    return unknown(f"not decided: the check stopped with {type(err).__name__}: {text}")


def timed_out(name: str, timeout: float) -> Verdict:
    return unknown(f"unknown (timed out): {name} was not decided within its budget of {timeout:g} s "
                   f"(lossc check --timeout SECONDS)")


def over_memory(name: str, memory_mb: float) -> Verdict:
    return unknown(f"unknown (memory budget exceeded): {name} needed more than {memory_mb:g} MiB "
                   f"(lossc check --memory MIB)")


def is_budget_verdict(v: Verdict) -> bool:
    """True for a verdict that says a budget ran out (such reports are not cached)."""
    return v.verdict == "unknown" and v.evidence.startswith(("unknown (timed out)", "unknown (memory budget"))


def run_properties(setup, run_one, names, timeout: float, memory_mb: float) -> dict:
    """{name: Verdict} for each name: ``setup()`` builds the checker (in the worker), ``run_one(checker,
    name, known)`` decides one property given the verdicts decided so far. Never raises (except
    KeyboardInterrupt)."""
    if timeout <= 0:
        raise ValueError("the timeout must be positive")
    if hasattr(os, "fork"):
        return _forked(setup, run_one, list(names), float(timeout), float(memory_mb))
    return _in_process(setup, run_one, list(names), float(timeout))


# ---------------------------------------------------------------------------- forked workers

def _send(fd: int, message) -> None:
    try:
        data = pickle.dumps(message)
    except Exception as err:  # noqa: BLE001 - an unpicklable result is reported, not raised
        if message[0] != "done":
            raise
        data = pickle.dumps(("done", message[1], failed(TypeError(f"the verdict could not be returned: {err}"))))
    data = struct.pack("<Q", len(data)) + data
    while data:
        data = data[os.write(fd, data):]


def _address_space() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _limit_memory(memory_mb: float) -> None:
    if not memory_mb or memory_mb == float("inf"):
        return
    try:
        import resource
    except ImportError:
        return
    used = _address_space()
    if used is None:
        return
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    soft = used + int(memory_mb * 2**20)
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _die_with_parent(parent: int) -> None:
    """Linux: the worker gets SIGKILL when the process that forked it dies (a killed ``lossc check``)."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(0)


def _worker(fd: int, setup, run_one, names, known: dict, memory_mb: float, parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    _die_with_parent(parent)
    checker, setup_error = None, None
    for name in names:
        _send(fd, ("start", name))
        _limit_memory(memory_mb)
        try:
            if setup_error is not None:
                raise setup_error
            if checker is None:
                try:
                    checker = setup()
                except Exception as err:  # noqa: BLE001 - every property reports it
                    setup_error = err
                    raise
                _send(fd, ("ready", name))
            verdict = run_one(checker, name, known)
        except MemoryError:
            checker = None
            _send(fd, ("done", name, None))  # None: over the memory budget
            return  # a fresh worker takes the rest: this one may be left in a bad state
        except Exception as err:  # noqa: BLE001 - the checker never raises: unknown, with the reason
            verdict = failed(err)
        known[name] = verdict
        _send(fd, ("done", name, verdict))


def _forked(setup, run_one, names, timeout: float, memory_mb: float) -> dict:
    done: dict = {}
    while len(done) < len(names):
        todo = [n for n in names if n not in done]
        r, w = os.pipe()
        parent = os.getpid()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # "multi-threaded, fork() may deadlock": then it times out
            pid = os.fork()
        if pid == 0:  # the worker
            try:
                os.close(r)
                _worker(w, setup, run_one, todo, dict(done), memory_mb, parent)
            except BaseException:  # noqa: BLE001 - the worker never returns into the caller's code
                pass
            finally:
                os._exit(0)
        os.close(w)
        reaped = False
        try:
            unfinished = _collect(r, pid, todo, done, timeout, memory_mb)
            status = _reap(pid)
            reaped = True
            if unfinished is not None:
                done[unfinished] = unknown(f"not decided: the worker process checking {unfinished} died ({status})")
        finally:
            os.close(r)
            if not reaped:  # interrupted (KeyboardInterrupt): the worker must not outlive the call
                os.kill(pid, signal.SIGKILL)
                _reap(pid)
    return {n: done[n] for n in names}


def _collect(fd: int, pid: int, todo, done: dict, timeout: float, memory_mb: float) -> str | None:
    """Read the worker's messages into ``done`` until it ends or runs past a budget (then kill it); the
    property it was checking when it ended without a result, if any."""
    buf = b""
    current, ready, deadline = None, False, None
    while True:
        wait = None if deadline is None else max(0.0, deadline - time.monotonic())
        readable, _, _ = select.select([fd], [], [], wait)
        if not readable:  # past the budget of the current property
            os.kill(pid, signal.SIGKILL)
            done[current] = timed_out(current, timeout)
            if not ready:  # the analysis itself (shared by all properties) did not finish in time
                for name in todo:
                    done.setdefault(name, unknown(f"unknown (timed out): preparing the analysis took longer than "
                                                  f"the budget of {timeout:g} s (lossc check --timeout SECONDS)"))
            return None
        chunk = os.read(fd, 1 << 16)
        if not chunk:  # the worker ended
            return current if current is not None and current not in done else None
        buf += chunk
        while len(buf) >= 8:
            size = struct.unpack("<Q", buf[:8])[0]
            if len(buf) < 8 + size:
                break
            message, buf = pickle.loads(buf[8:8 + size]), buf[8 + size:]
            if message[0] == "start":
                current, deadline = message[1], time.monotonic() + timeout
            elif message[0] == "ready":
                ready = True
            else:
                _, name, verdict = message
                done[name] = verdict if verdict is not None else over_memory(name, memory_mb)
                current, deadline = None, None


def _reap(pid: int) -> str:
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:
        return "already reaped"
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        return f"killed by signal {signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else sig}"
    return f"exit status {os.WEXITSTATUS(status)}"


# ---------------------------------------------------------------------------- in this process

class _Deadline(BaseException):  # not an Exception: the checks' broad handlers must not swallow it
    pass


def _in_process(setup, run_one, names, timeout: float) -> dict:
    alarm = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    done: dict = {}
    checker, setup_error = None, None

    def on_alarm(signum, frame):
        raise _Deadline

    previous = signal.signal(signal.SIGALRM, on_alarm) if alarm else None
    try:
        for name in names:
            if alarm:
                signal.setitimer(signal.ITIMER_REAL, timeout)
            try:
                if checker is None and setup_error is None:
                    checker = setup()
                done[name] = failed(setup_error) if setup_error else run_one(checker, name, dict(done))
            except _Deadline:
                done[name] = timed_out(name, timeout)
            except Exception as err:  # noqa: BLE001
                if checker is None:
                    setup_error = err
                done[name] = failed(err)
            finally:
                if alarm:
                    signal.setitimer(signal.ITIMER_REAL, 0)
    finally:
        if alarm:
            signal.signal(signal.SIGALRM, previous)
    return done


__all__ = ["run_properties", "DEFAULT_TIMEOUT", "DEFAULT_MEMORY_MB", "is_budget_verdict", "failed"]
