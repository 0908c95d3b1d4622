"""A fork server for the fault tests: one interpreter that has imported torch and mnistlab (about 3 s of
CPU, most of each `python -m mnistlab` process) and forks a child for each command it is sent.

Each child is a real, separate process: it gets its own pid, environment, working directory and
stdin/stdout/stderr files, then runs `mnistlab/__main__.py` exactly as `python -m mnistlab ARGS` does
(runpy, `sys.argv` set, `raise SystemExit(main())`), then exits the way the interpreter does (non-daemon
threads joined, atexit handlers run, streams flushed). A kill point's SIGKILL, a test's SIGKILL or SIGTERM
reach that process alone and end it for real. The server itself never runs mnistlab code or a torch
operation, so every child starts from the state of a fresh interpreter that has just done its imports.

What a fork cannot redo is interpreter and library start-up, which reads some environment variables
(PYTHON*, OMP_*, locale, ...) once: the client (tests/faults/conftest.py) sends a command here only when
those are the server's own, and starts a fresh `python -m mnistlab` otherwise.

Protocol, over a Unix socket, one connection per command: the client sends one JSON line
{"argv", "env", "cwd", "stdin", "stdout", "stderr"} (file paths; "stderr" may be "STDOUT"), and "script"
to run `python SCRIPT ARGV` (a test's helper that uses mnistlab) instead of mnistlab; the server
answers {"pid": N} once forked and {"returncode": R} when the child has ended (R negative for a signal,
as in subprocess). The server exits when its stdin closes.
"""

from __future__ import annotations

import atexit
import io
import json
import os
import runpy
import selectors
import signal
import socket
import sys
import threading
import traceback

# what `python -m mnistlab train/eval/plot/report/data/sweep ...` imports, done once here
import torch
import torch._inductor  # torch.use_deterministic_algorithms imports it (2.5 s)
import torch.utils.tensorboard  # noqa: F401

import mnistlab.cli
import mnistlab.jobs.sweep
import mnistlab.report.plots
import mnistlab.training.runner  # noqa: F401


def _stream(fd: int, unbuffered: bool, stderr: bool) -> io.TextIOWrapper:
    """sys.stdout/sys.stderr as the interpreter builds them (see Python/pylifecycle.c create_stdio)."""
    raw = io.FileIO(fd, "w", closefd=False)
    buffered = raw if unbuffered else io.BufferedWriter(raw)
    spec = os.environ.get("PYTHONIOENCODING", "")
    encoding, _, errors = spec.partition(":")
    encoding = encoding or sys.__stdout__.encoding or "utf-8"
    errors = errors or ("backslashreplace" if stderr else sys.__stdout__.errors or "strict")
    return io.TextIOWrapper(
        buffered,
        encoding=encoding,
        errors=errors,
        line_buffering=stderr or (not unbuffered and os.isatty(fd)),
        write_through=unbuffered,
    )


def _child(request: dict) -> None:
    """In the forked child: become `python -m mnistlab *argv`, run it, exit like the interpreter."""
    code = 1
    try:
        for fd, path, flags in (
            (0, request["stdin"], os.O_RDONLY),
            (1, request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
            (2, request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
        ):
            if path == "STDOUT":
                os.dup2(1, fd)
                continue
            opened = os.open(path, flags, 0o644)
            os.dup2(opened, fd)
            os.close(opened)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        unbuffered = bool(os.environ.get("PYTHONUNBUFFERED"))
        sys.stdin = sys.__stdin__ = io.TextIOWrapper(io.BufferedReader(io.FileIO(0, "r", closefd=False)))
        sys.stdout = sys.__stdout__ = _stream(1, unbuffered, stderr=False)
        sys.stderr = sys.__stderr__ = _stream(2, unbuffered, stderr=True)
        script = request.get("script")
        sys.argv = [script or "-m", *request["argv"]]
        sys.path[0] = os.path.dirname(os.path.abspath(script)) if script else os.getcwd()  # as python does
        if "numpy" in sys.modules:  # a fresh process seeds numpy's global generator from the OS (random reseeds itself)
            sys.modules["numpy"].random.seed()
        try:
            if script:  # `python SCRIPT ARGS`
                runpy.run_path(script, run_name="__main__")
            else:  # `python -m mnistlab ARGS`
                runpy.run_module("mnistlab", run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as e:
            if e.code is None:
                code = 0
            elif isinstance(e.code, int):
                code = e.code & 0xFF
            else:
                print(e.code, file=sys.stderr)
                code = 1
        except KeyboardInterrupt:
            traceback.print_exc()
            sys.stderr.flush()
            signal.signal(signal.SIGINT, signal.SIG_DFL)  # the interpreter's exit for an uncaught Ctrl-C
            os.kill(os.getpid(), signal.SIGINT)
        except BaseException:  # noqa: BLE001 - an uncaught exception: traceback, exit 1
            traceback.print_exc()
            code = 1
        threading._shutdown()  # join non-daemon threads, as interpreter exit does
        atexit._run_exitfuncs()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001
                code = 120 if code == 0 else code
    except BaseException:  # noqa: BLE001 - the set-up failed: say so on whatever stderr is
        try:
            traceback.print_exc()
            sys.stderr.flush()
        except Exception:  # noqa: BLE001
            pass
        code = 1
    os._exit(code)


def serve(path: str) -> None:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ, "accept")
    sel.register(sys.stdin, selectors.EVENT_READ, "stdin")
    children: dict[int, socket.socket] = {}
    print("ready", flush=True)
    try:
        while True:
            for key, _ in sel.select(timeout=0.01):
                if key.data == "stdin":
                    if not os.read(sys.stdin.fileno(), 4096):
                        return
                    continue
                conn, _ = listener.accept()
                with conn.makefile("rb") as f:
                    request = json.loads(f.readline())
                pid = os.fork()
                if pid == 0:
                    sel.close()
                    listener.close()
                    for other in children.values():
                        other.close()
                    conn.close()
                    _child(request)
                children[pid] = conn
                _send(conn, {"pid": pid})
            while children:
                pid, status = os.waitpid(-1, os.WNOHANG)
                if pid == 0:
                    break
                conn = children.pop(pid, None)
                if conn is not None:
                    _send(conn, {"returncode": os.waitstatus_to_exitcode(status)})
                    conn.close()
    finally:
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _send(conn: socket.socket, message: dict) -> None:
    try:
        conn.sendall((json.dumps(message) + "\n").encode())
    except OSError:  # the client has gone; the child is reaped all the same
        pass


if __name__ == "__main__":
    serve(sys.argv[1])
