"""Run untrusted model-written code in a separate, limited process.

Layers, each catching what the one before may miss:
- a fresh `python -I -S` process in a new session (killed as a whole group on timeout), with a
  fresh temporary working directory, HOME and TMPDIR inside it, and a minimal environment;
- `resource` limits: CPU seconds, address space (memory), file size, open files, processes
  (RLIMIT_NPROC stops fork bombs, but the kernel ignores it for root: so when we run as root the
  child drops to the `nobody` user first, which also makes files outside its directory read-only);
- a private network namespace (`unshare(CLONE_NEWNET)`) where the OS allows it, and in any case
  the socket module disabled inside the child;
- a guard, run in the child before the program, that removes destructive functions (os.remove,
  os.fork, subprocess, shutil.rmtree, ...), as OpenAI's human-eval `reliability_guard` does;
- "passed" needs exit status 0 and a nonce printed after the program finished, so a program that
  exits early with status 0 still fails.
This is not a security boundary against a determined attacker (use a container or VM for that);
it keeps buggy or hostile completions from harming the machine or the evaluation.
"""
from __future__ import annotations

import ctypes
import os
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from dataclasses import dataclass

CLONE_NEWNET = 0x40000000
NOBODY = 65534

_RUNNER = r'''
import sys
def _main():
    nonce = sys.stdin.readline().strip()
    program = sys.stdin.read()
    import builtins, faulthandler, os, shutil, socket, subprocess
    faulthandler.disable()
    for name in ("socket", "create_connection", "create_server", "socketpair", "fromfd"):
        setattr(socket, name, None)
    for name in ("kill", "killpg", "system", "putenv", "remove", "removedirs", "rmdir", "fchdir",
                 "setuid", "fork", "forkpty", "vfork", "posix_spawn", "posix_spawnp", "execv",
                 "execve", "execvp", "execvpe", "execl", "execle", "execlp", "spawnv", "spawnve",
                 "rename", "renames", "truncate", "replace", "unlink", "fchmod", "fchown", "chmod",
                 "chown", "chroot", "lchown", "lchmod", "lchflags", "chflags", "getcwd", "chdir",
                 "_exit", "popen", "startfile"):
        if hasattr(os, name):
            setattr(os, name, None)
    shutil.rmtree = shutil.move = shutil.chown = None
    subprocess.Popen = subprocess.run = subprocess.call = None
    subprocess.check_call = subprocess.check_output = None
    builtins.exit = builtins.quit = None
    for name in ("ipdb", "joblib", "resource", "psutil", "tkinter", "ctypes", "_ctypes", "posix"):
        sys.modules[name] = None
    out = sys.stdout
    exec(compile(program, "<completion>", "exec"), {"__name__": "__main__"})
    out.write("\n" + nonce + "\n")
    out.flush()
_main()
'''


@dataclass(frozen=True)
class Outcome:
    passed: bool
    status: str  # "passed" | "failed" | "timeout"
    detail: str  # last lines of stderr, for the audit trail


def _limit_child(workdir: str, cpu_s: int, memory_mb: int, max_procs: int) -> None:
    """Runs in the child between fork and exec (so only async-signal-safe-ish work)."""
    import resource

    os.setsid()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.unshare(CLONE_NEWNET)  # fails without privileges; the guard still disables sockets
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s))
    resource.setrlimit(resource.RLIMIT_AS, (memory_mb << 20, memory_mb << 20))
    resource.setrlimit(resource.RLIMIT_FSIZE, (16 << 20, 16 << 20))
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if os.geteuid() == 0:
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
    resource.setrlimit(resource.RLIMIT_NPROC, (max_procs, max_procs))
    os.chdir(workdir)


def run_program(program: str, timeout_s: float = 10.0, memory_mb: int = 1024,
                max_procs: int = 16) -> Outcome:
    """Execute `program` (e.g. prompt + completion + tests) and report whether it passed."""
    nonce = secrets.token_hex(16)
    python = interpreter()
    with tempfile.TemporaryDirectory(prefix="spiel-sandbox-") as workdir:
        if os.geteuid() == 0:
            os.chown(workdir, NOBODY, NOBODY)
        env = {"PATH": "/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8",
               "PYTHONHASHSEED": "0"}
        proc = subprocess.Popen(
            [python, "-I", "-S", "-c", _RUNNER], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=workdir, env=env,
            preexec_fn=lambda: _limit_child(workdir, int(timeout_s) + 1, memory_mb, max_procs))
        try:
            stdout, stderr = proc.communicate(f"{nonce}\n{program}".encode(), timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            return Outcome(False, "timeout", f"no result within {timeout_s} s")
        finally:
            _kill_group(proc)  # children left behind by a program that exited
    passed = proc.returncode == 0 and nonce in stdout.decode(errors="replace").split()
    detail = "\n".join(stderr.decode(errors="replace").strip().splitlines()[-3:])
    return Outcome(passed, "passed" if passed else "failed", detail)


def _world_runnable(path: str) -> bool:
    """True when a user with no rights of its own (nobody) can execute `path`."""
    real = os.path.realpath(path)
    parts = real.split(os.sep)
    dirs = [os.sep.join(parts[:i]) or os.sep for i in range(1, len(parts))]
    return (os.path.isfile(real) and os.stat(real).st_mode & stat.S_IXOTH != 0
            and all(os.stat(d).st_mode & stat.S_IXOTH for d in dirs))


def interpreter() -> str:
    """The Python that runs the program: ours, or when we are root (the child then becomes
    `nobody`) the first of ours and the system's that `nobody` can execute (stdlib only is
    needed). Refuses rather than run untrusted code as root."""
    if os.geteuid() != 0:
        return sys.executable
    for candidate in (sys.executable, shutil.which("python3"), "/usr/bin/python3",
                      "/usr/local/bin/python3"):
        if candidate and _world_runnable(candidate):
            return candidate
    raise RuntimeError("sandbox: running as root and no Python interpreter is executable by "
                       "'nobody'; run the evaluation as a normal user")


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if proc.poll() is None:
        proc.kill()
    proc.communicate()
