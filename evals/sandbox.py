"""Judge untrusted, model-written functions with the kernel, not Python, as the wall.

Threat model. The solution (e.g. HumanEval prompt + completion) is arbitrary Python written by an
adversary who knows this file. It may loop, fork, allocate, print without end, start background
or `setsid` processes, re-import any module (`posix`, `_socket`, `ctypes`), read every frame of
its interpreter, and make any system call. The benchmark's prompt and tests, this module and the
process calling it are trusted. Python-level stubs cannot hold such code, so the sandbox removes
nothing from Python: it relies on processes, uids, namespaces, rlimits and seccomp.

The verdict cannot be forged. Solution and tests never share an interpreter: the solution runs in
a *solver* sandbox, the tests in a *judge* sandbox. The judge runs the prelude (the prompt, for
helpers such as `poly`) and the tests, and gives `check` a stand-in for the entry point that sends
each call's arguments to the solver over a pipe and gets back only plain data (None, bool, int,
float, complex, str, bytes, list, tuple, dict, set, frozenset), rebuilt by a strict decoder: no
code, and no object with a rigged `__eq__`. The solver never sees the tests or their expected
values. Passed means exactly that `check(candidate)` returned in the judge, which says so on a pipe
only the judge and the caller hold; the solver cannot reach the judge (another PID namespace, or
another uid and the judge not dumpable). Exit statuses, tokens and printed text play no part, so
`os._exit(0)`, reading frames or writing to every file descriptor cannot make a solution pass.
(Difference to in-process harnesses: results must be plain data; a generator or object fails.
All 164 canonical HumanEval solutions pass.)

Isolation modes, the strongest that works probed once per process (`isolation()`;
SPIEL_SANDBOX_ISOLATION=namespaces|uid forces one):
- "namespaces" (root, or a normal user where unprivileged user namespaces work): each sandbox has
  its own PID, network, mount, IPC and UTS namespaces (and, not as root, a user namespace). Its
  root is a new tmpfs with read-only binds of /usr, /bin, /sbin, /lib*, /etc and the interpreter's
  directories, /dev/{null,zero,full,random,urandom}, a /proc of its own PID namespace (none where
  a container forbids one), and a private /tmp of `disk_mb` (also /var/tmp, /dev/shm, HOME, cwd).
  Nothing else exists for it: not /home, /root, /run, the checkout, the caller's files, sockets or
  processes. Its network namespace is empty (no loopback service, no internet). As root it runs
  as a fresh uid (below); as a normal user as uid 0 of its user namespace (your uid outside) with
  every capability dropped, so it cannot write outside its /tmp. Its first process is
  PID 1 of the namespace: when it dies the kernel kills all the others, `setsid` or not.
- "uid" (root where namespaces are refused, e.g. a default Docker container): each sandbox runs as
  a fresh uid from SPIEL_SANDBOX_UIDS (default 62000-62999; one with no passwd or group entry, no
  process, and locked against concurrent evaluations) in a private 0700 directory. It cannot
  signal, trace or read the memory or environment of the caller, the judge or other sandboxes. It
  can read world-readable files and write only where anyone may (what it leaves in /tmp,
  /var/tmp, /dev/shm, /run/lock and the other WORLD_WRITABLE folders, and in any world-writable
  folder below them, is deleted afterwards). seccomp refuses sockets, so no network. A
  `kill(-1, SIGKILL)` sent as its uid ends all its processes at once, `setsid` or not.
- a normal user without user namespaces: nothing can separate the code from you, so the sandbox
  refuses (`SandboxUnavailable`) instead of running it as you. Run as root, or allow unprivileged
  user namespaces (sysctl kernel.unprivileged_userns_clone=1; on Ubuntu 24.04
  kernel.apparmor_restrict_unprivileged_userns=0).
In both modes: a clean environment (no HF_TOKEN or other secrets), `python -I -S` (standard
library only), rlimits on CPU time, address space (`memory_mb`), file size (`disk_mb`), open files
and processes (`max_procs`, counted per sandbox uid, so a fork bomb stays inside), no core dumps,
no new privileges, an empty capability bounding set, and seccomp refusing socket, ptrace,
process_vm_*, io_uring, bpf, perf_event_open, userfaultfd, keyrings and System V / POSIX IPC
objects (shared memory, semaphores, message queues: memory RLIMIT_AS does not count, which in
"uid" would outlive the run) (x86_64, aarch64; "uid" refuses to run elsewhere). A trusted supervisor process outside each sandbox reaps everything it
leaves. The caller keeps a wall-clock timeout after which everything is killed, reads all pipes
without blocking, and fails a run at once when it writes more than `max_output` bytes (keeping
only a short tail of stderr for the record).
Not covered: kernel exploits and side channels (use a VM for that); the CPU, memory and (in "uid",
per file only) disk the run uses within its limits; in "uid", files in /dev/shm (memory, counted
per file by RLIMIT_FSIZE, removed afterwards) and world-readable files, which may include
benchmark data.
"""
from __future__ import annotations

import ctypes
import errno
import fcntl
import json
import logging
import os
import platform
import resource
import shutil
import signal
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass

UID_RANGE = (62000, 62999)  # fresh uids for sandboxes when root; override: SPIEL_SANDBOX_UIDS=lo-hi
MESSAGE_LIMIT = 16 << 20  # one call's arguments or result, encoded
# Where any user may write on a standard Linux system ("uid" mode cleans them after each run)
WORLD_WRITABLE = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock", "/var/lock", "/dev/mqueue",
                  "/var/crash", "/var/metrics")
_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}


@dataclass(frozen=True)
class Outcome:
    passed: bool
    status: str  # "passed" | "failed" | "timeout"
    detail: str  # why it failed, then the last lines of the solution's stderr


class SandboxUnavailable(RuntimeError):
    """This machine offers no isolation we trust for untrusted code."""


# ----------------------------------------------------------------------------- the caller's side

def check_function(solution: str, entry_point: str, tests: str, prelude: str = "", *,
                   timeout_s: float = 10.0, memory_mb: int = 1024, max_procs: int = 16,
                   max_output: int = 1 << 20, disk_mb: int = 64,
                   isolation_mode: str | None = None) -> Outcome:
    """Run `solution` (untrusted) in one sandbox and `prelude` + `tests` (trusted; they define
    `check(candidate)`) in another, and pass iff `check` returns for the solution's `entry_point`.
    See the module docstring for what is guaranteed."""
    mode = isolation_mode or isolation()
    limits = {"cpu_s": int(timeout_s) + 1, "memory_mb": memory_mb, "max_procs": max_procs,
              "disk_mb": disk_mb}
    with _Run(mode) as run:
        solver = run.start("solver", solution.encode(), limits)
        judge = run.start("judge", json.dumps({"prelude": prelude, "tests": tests,
                                               "entry_point": entry_point}).encode(),
                          {**limits, "max_procs": 0})
        return run.collect(solver, judge, time.monotonic() + timeout_s, max_output)


_probe_lock = threading.Lock()
_probed: dict[str, str] = {}


def isolation() -> str:
    """The strongest mode this machine allows ("namespaces" or "uid"), probed once; raises
    `SandboxUnavailable` when none. SPIEL_SANDBOX_ISOLATION=namespaces|uid forces one."""
    forced = os.environ.get("SPIEL_SANDBOX_ISOLATION")
    with _probe_lock:
        key = forced or "auto"
        if key not in _probed:
            _probed[key] = _choose(forced)
        return _probed[key]


def _choose(forced: str | None) -> str:
    if not sys.platform.startswith("linux"):
        raise SandboxUnavailable("the sandbox needs Linux")
    reasons = []
    for mode in ([forced] if forced else ["namespaces", "uid"]):
        if mode == "uid" and os.geteuid() != 0:
            reasons.append("uid: only root can run code as another user")
            continue
        why = _probe(mode)
        if why is None:
            if reasons:
                logging.getLogger(__name__).warning(
                    "sandbox: isolation by uid only (%s); see evals/sandbox.py", reasons[0])
            return mode
        reasons.append(f"{mode}: {why}")
    raise SandboxUnavailable(
        "no isolation for untrusted code on this machine (" + "; ".join(reasons) + "). Run as "
        "root, or enable unprivileged user namespaces (kernel.unprivileged_userns_clone=1; on "
        "Ubuntu kernel.apparmor_restrict_unprivileged_userns=0).")


def _probe(mode: str) -> str | None:
    """None if a sandbox of this mode starts and can import the standard library, else why not."""
    try:
        with _Run(mode) as run:
            proc = run.start("probe", b"", {"cpu_s": 10, "memory_mb": 1024, "max_procs": 4,
                                            "disk_mb": 1})
            try:
                out, err = proc.popen.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                return "the probe did not finish in 30 s"
            finally:
                run.kill(proc)
    except (OSError, SandboxUnavailable) as exc:
        return str(exc)
    if proc.popen.returncode == 0 and out.strip() == b"ok":
        return None
    return (err.decode(errors="replace").strip().splitlines() or ["no output"])[-1]


def interpreter(mode: str) -> str:
    """The Python that runs sandboxes: ours, or when we are root and the sandbox's uid could
    not use it, the first of ours and the system's that any user can execute. Only the standard
    library is needed."""
    if os.geteuid() != 0:
        return sys.executable
    stdlib = os.path.dirname(os.__file__)
    dirs = [d for d in (stdlib, os.path.join(stdlib, "lib-dynload")) if os.path.isdir(d)]
    if mode == "namespaces" and all(os.stat(d).st_mode & 0o005 == 0o005 for d in dirs):
        return sys.executable  # started as root; the sandbox's uid reads the standard library
    for candidate in (sys.executable, shutil.which("python3"), "/usr/bin/python3",
                      "/usr/local/bin/python3"):
        if candidate and _world_runnable(candidate):
            return candidate
    raise SandboxUnavailable("running as root and no Python interpreter is executable by "
                             "other users")


def _world_runnable(path: str) -> bool:
    real = os.path.realpath(path)
    parts = real.split(os.sep)
    dirs = [os.sep.join(parts[:i]) or os.sep for i in range(1, len(parts))]
    return (os.path.isfile(real) and os.stat(real).st_mode & stat.S_IXOTH != 0
            and all(os.stat(d).st_mode & stat.S_IXOTH for d in dirs))


@dataclass
class _Proc:
    role: str
    popen: subprocess.Popen
    uid: int | None
    fds: dict  # name -> our end of its pipes
    killed: bool = False


class _Run:
    """One evaluation: its uids, directories, pipes and processes, all released on exit."""

    def __init__(self, mode: str):
        if mode not in ("namespaces", "uid"):
            raise ValueError(f"unknown isolation mode {mode!r}")
        self.mode, self.root = mode, os.geteuid() == 0
        if mode == "uid" and not self.root:
            raise SandboxUnavailable("isolation by uid needs root")
        self.leases: list[_UidLease] = []
        self.dirs: list[str] = []
        self.procs: list[_Proc] = []
        self.rpc: list[int] = []

    def __enter__(self):
        return self

    def start(self, role: str, stdin: bytes, limits: dict) -> _Proc:
        if role in ("solver", "judge") and not self.rpc:
            calls_r, calls_w = os.pipe()  # judge -> solver
            answers_r, answers_w = os.pipe()  # solver -> judge
            self.rpc = [calls_r, calls_w, answers_r, answers_w]
        calls_r, calls_w, answers_r, answers_w = self.rpc or (None,) * 4
        child_fds = {"solver": (calls_r, answers_w), "judge": (answers_r, calls_w)}.get(role, ())
        uid = None
        if self.root:
            lease = _UidLease()
            self.leases.append(lease)
            uid = lease.uid
        workdir = tempfile.mkdtemp(prefix="spiel-sandbox-")
        self.dirs.append(workdir)
        if uid is not None and self.mode == "uid":
            os.chown(workdir, uid, uid)
        verdict_r = verdict_w = None
        if role == "judge":
            verdict_r, verdict_w = os.pipe()
        pass_fds = tuple(child_fds) + ((verdict_w,) if verdict_w is not None else ())
        config = {"role": role, "mode": self.mode, "uid": uid, "dir": workdir, "limits": limits,
                  "fds": list(pass_fds)}
        home = "/tmp" if self.mode == "namespaces" else workdir
        with tempfile.TemporaryFile() as source:
            source.write(stdin)
            source.seek(0)
            popen = subprocess.Popen(
                [interpreter(self.mode), "-I", "-S", os.path.abspath(__file__), json.dumps(config)],
                stdin=source, stdout=subprocess.PIPE, stderr=subprocess.PIPE, pass_fds=pass_fds,
                cwd="/", env={**_ENV, "HOME": home, "TMPDIR": home}, start_new_session=True)
        if verdict_w is not None:
            os.close(verdict_w)
        proc = _Proc(role, popen, uid, {"stdout": popen.stdout, "stderr": popen.stderr,
                                        "verdict": verdict_r})
        self.procs.append(proc)
        if role == "judge" or role == "probe":  # both ends of the calls are handed out
            self._close_rpc()
        return proc

    def _close_rpc(self):
        for fd in self.rpc:
            os.close(fd)
        self.rpc = []

    def collect(self, solver: _Proc, judge: _Proc, deadline: float, max_output: int) -> Outcome:
        """Wait for the judge's verdict, the deadline, or too much output; then kill both."""
        streams = _Streams()
        streams.add("out", solver.fds["stdout"], counted=True)
        streams.add("err", solver.fds["stderr"], counted=True, keep=4096)
        streams.add("judge_err", judge.fds["stderr"], keep=4096)
        streams.add("judge_out", judge.fds["stdout"], keep=4096)
        streams.add("verdict", judge.fds["verdict"], keep=65536)
        status = None
        while status is None:
            streams.pump(min(max(deadline - time.monotonic(), 0.0), 0.25))
            if streams.counted > max_output:
                status = ("failed", f"the solution wrote more than {max_output} bytes of output")
            elif streams.closed("verdict"):
                status = ("verdict", "")
            elif time.monotonic() >= deadline:
                status = ("timeout", f"no result within {deadline - streams.started:.1f} s")
        for proc in (solver, judge):
            self.kill(proc)
        streams.drain(time.monotonic() + 2.0)
        tail = streams.tail("err")
        if status[0] != "verdict":
            return Outcome(False, status[0], "\n".join(filter(None, [status[1], tail])))
        try:
            verdict = json.loads(streams.text("verdict"))
            passed, reason = verdict["passed"] is True, str(verdict["reason"])
        except (ValueError, KeyError, TypeError):
            passed, reason = False, f"the judge gave no verdict: {streams.tail('judge_err')}"
        return Outcome(passed, "passed" if passed else "failed",
                       "" if passed else "\n".join(filter(None, [reason, tail])))

    def kill(self, proc: _Proc) -> None:
        """End the process and everything it started, and reap them all. "uid": first
        `kill(-1, SIGKILL)` sent as the sandbox's uid, which reaches every process of that uid
        at once. Then SIGTERM asks the supervisor (see `_supervise`) to kill the sandbox's first
        process (in "namespaces", its PID namespace dies with it) and reap; SIGKILL if it is
        slow, whereupon PDEATHSIG still kills the sandbox."""
        if proc.killed:
            return
        proc.killed = True
        if self.mode == "uid" and proc.uid is not None:
            try:
                subprocess.run([interpreter(self.mode), "-I", "-S", "-c",
                                "import os, signal; os.kill(-1, signal.SIGKILL)"],
                               user=proc.uid, group=proc.uid, extra_groups=[], env={}, cwd="/",
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, timeout=30)
            except (OSError, subprocess.SubprocessError):
                pass
        for sig, wait_s in ((signal.SIGTERM, 5), (signal.SIGKILL, 10)):
            if proc.popen.poll() is None:
                proc.popen.send_signal(sig)
            try:
                proc.popen.wait(timeout=wait_s)
                return
            except subprocess.TimeoutExpired:
                pass

    def __exit__(self, *exc):
        self._close_rpc()
        for proc in self.procs:
            self.kill(proc)
            for f in proc.fds.values():
                if isinstance(f, int):
                    os.close(f)
                elif f is not None:
                    f.close()
        if self.mode == "uid":
            for lease in self.leases:
                _remove_owned_by(lease.uid, WORLD_WRITABLE)
        for d in self.dirs:
            shutil.rmtree(d, ignore_errors=True)
        for lease in self.leases:
            lease.release()
        return False


class _Streams:
    """Non-blocking reads from several pipes, keeping only a bounded tail of each."""

    def __init__(self):
        import selectors
        self.sel = selectors.DefaultSelector()
        self.tails: dict[str, bytearray] = {}
        self.keep: dict[str, int] = {}
        self.open: set[str] = set()
        self.counted_names: set[str] = set()
        self.counted = 0
        self.started = time.monotonic()

    def add(self, name: str, f, counted: bool = False, keep: int = 0):
        fd = f if isinstance(f, int) else f.fileno()
        os.set_blocking(fd, False)
        self.sel.register(fd, 1, name)  # EVENT_READ
        self.tails[name], self.keep[name] = bytearray(), keep
        self.open.add(name)
        if counted:
            self.counted_names.add(name)

    def pump(self, timeout: float) -> None:
        for key, _ in self.sel.select(timeout):
            name = key.data
            try:
                data = os.read(key.fd, 1 << 16)
            except BlockingIOError:
                continue
            if not data:
                self.sel.unregister(key.fd)
                self.open.discard(name)
                continue
            if name in self.counted_names:
                self.counted += len(data)
            tail = self.tails[name]
            tail += data
            del tail[:max(0, len(tail) - self.keep[name])]

    def closed(self, name: str) -> bool:
        return name not in self.open

    def drain(self, deadline: float) -> None:
        while self.open and time.monotonic() < deadline:
            self.pump(max(0.0, min(0.1, deadline - time.monotonic())))

    def text(self, name: str) -> str:
        return self.tails[name].decode(errors="replace")

    def tail(self, name: str, lines: int = 3, width: int = 300) -> str:
        """The last lines of a stream, each cut to `width` characters."""
        return "\n".join(line if len(line) <= width else line[:width] + "..."
                         for line in self.text(name).strip().splitlines()[-lines:])


class _UidLease:
    """A uid from UID_RANGE that has no passwd or group entry, no process (not even a zombie
    of an earlier run), and that no other evaluation holds (a lock in a root-only directory)."""

    _vetted: set[int] = set()

    def __init__(self):
        import pwd, grp
        lo, hi = UID_RANGE
        if os.environ.get("SPIEL_SANDBOX_UIDS"):
            lo, hi = (int(x) for x in os.environ["SPIEL_SANDBOX_UIDS"].split("-"))
        locks = os.path.join(tempfile.gettempdir(), "spiel-sandbox-uids")
        try:
            os.mkdir(locks, 0o700)
        except FileExistsError:
            pass
        st = os.lstat(locks)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != 0 or st.st_mode & 0o077:
            raise SandboxUnavailable(f"{locks} must be a directory only root can use")
        for uid in range(lo, hi + 1):
            if uid not in self._vetted:
                try:
                    pwd.getpwuid(uid)
                    continue
                except KeyError:
                    pass
                try:
                    grp.getgrgid(uid)
                    continue
                except KeyError:
                    pass
                self._vetted.add(uid)
            fd = os.open(os.path.join(locks, str(uid)), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                         0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            if uid in _uids_with_processes():  # a process, even a zombie, of a past run
                os.close(fd)
                continue
            self.uid, self.fd = uid, fd
            return
        raise SandboxUnavailable(f"no free sandbox uid in {lo}-{hi} (SPIEL_SANDBOX_UIDS)")

    def release(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _uids_with_processes() -> set[int]:
    """Real, effective and saved uids of every process (zombies too) on this machine.
    (/proc/<pid> itself is owned by root once a process changes uid, hence the status file.)"""
    uids: set[int] = set()
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/status") as fh:
                    for line in fh:
                        if line.startswith("Uid:"):
                            uids.update(int(u) for u in line.split()[1:4])
                            break
            except (OSError, ValueError):
                pass
    return uids


def _remove_owned_by(uid: int, dirs) -> None:
    """Delete what `uid` made in `dirs` and in every world-writable folder below them (the only
    places a fresh uid can write; its own folders go whole). Its processes are dead by now, so
    nothing moves while we walk, and no symbolic link is followed."""
    todo, seen = [os.path.realpath(d) for d in dirs], set()
    while todo:
        d = todo.pop()
        if d in seen:
            continue
        seen.add(d)
        try:
            entries = list(os.scandir(d))
        except OSError:
            continue
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
                if st.st_uid == uid and stat.S_ISDIR(st.st_mode):
                    shutil.rmtree(entry.path, ignore_errors=True)
                elif st.st_uid == uid:
                    os.unlink(entry.path)
                elif stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_IWOTH:
                    todo.append(entry.path)
            except OSError:
                pass


# ------------------------------------------------------------------ the plain-data wire format

def _encode(value) -> bytes:
    def enc(v):
        if v is None or isinstance(v, (bool, str)):
            return v
        if isinstance(v, int):
            return int(v)
        if isinstance(v, float):
            return float(v)
        if isinstance(v, list):
            return [enc(x) for x in v]
        if isinstance(v, tuple):
            return {"tuple": [enc(x) for x in v]}
        if isinstance(v, frozenset):
            return {"frozenset": [enc(x) for x in v]}
        if isinstance(v, set):
            return {"set": [enc(x) for x in v]}
        if isinstance(v, dict):
            return {"dict": [[enc(k), enc(x)] for k, x in v.items()]}
        if isinstance(v, (bytes, bytearray)):
            return {"bytes": bytes(v).hex()}
        if isinstance(v, complex):
            return {"complex": [v.real, v.imag]}
        raise TypeError(f"a {type(v).__name__} is not plain data")
    return json.dumps(enc(value)).encode()


def _decode(data: bytes):
    tags = {"tuple": tuple, "set": set, "frozenset": frozenset,
            "dict": lambda items: {k: v for k, v in items},
            "bytes": bytes.fromhex, "complex": lambda parts: complex(*parts)}

    def hook(pairs):
        if len(pairs) != 1 or pairs[0][0] not in tags:
            raise ValueError("not plain data")
        tag, body = pairs[0]
        if (type(body) is not (str if tag == "bytes" else list)
                or tag == "complex" and not (len(body) == 2 and all(type(x) is float for x in body))
                or tag == "dict" and not all(type(kv) is list and len(kv) == 2 for kv in body)):
            raise ValueError("not plain data")
        return tags[tag](body)
    return json.loads(data.decode(), object_pairs_hook=hook)


def _send(fd: int, payload: bytes) -> None:
    data = struct.pack(">I", len(payload)) + payload
    while data:
        data = data[os.write(fd, data):]


def _receive(fd: int) -> bytes | None:
    def exactly(n):
        buf = bytearray()
        while len(buf) < n:
            chunk = os.read(fd, n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return bytes(buf)
    head = exactly(4)
    if head is None:
        return None
    (n,) = struct.unpack(">I", head)
    if n > MESSAGE_LIMIT:
        raise ValueError(f"a message of {n} bytes is over the limit of {MESSAGE_LIMIT}")
    return exactly(n)


# ------------------------------------------------------------ inside the sandbox (trusted part)

_CLONE = {"NEWNS": 0x20000, "NEWUTS": 0x04000000, "NEWIPC": 0x08000000,
          "NEWUSER": 0x10000000, "NEWPID": 0x20000000, "NEWNET": 0x40000000}
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 1, 2, 4, 8, 32
MS_BIND, MS_REC, MS_PRIVATE, MNT_DETACH = 4096, 16384, 1 << 18, 2
_MOUNT_OPTS = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC, "noatime": 1024,
               "nodiratime": 2048, "relatime": 1 << 21, "strictatime": 1 << 24}
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_SECCOMP, PR_CAPBSET_DROP = 1, 4, 22, 24
PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 36, 38
PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 47, 4
# per architecture: audit arch, pivot_root, and the system calls seccomp refuses (EPERM):
# socket, ptrace, process_vm_readv/writev, bpf, perf_event_open, userfaultfd,
# add_key/request_key/keyctl, io_uring_setup/enter/register, and System V and POSIX IPC objects
# (shmget, shmat, shmctl, semget, msgget, mq_open): they hold memory outside the address space
# that RLIMIT_AS counts (a segment touched and detached), and without an IPC namespace ("uid")
# they outlive the run.
_ARCH = {
    "x86_64": (0xC000003E, 155, [41, 101, 310, 311, 321, 298, 323, 248, 249, 250, 425, 426, 427,
                                 29, 30, 31, 64, 68, 240]),
    "aarch64": (0xC00000B7, 41, [198, 117, 270, 271, 280, 241, 282, 217, 218, 219, 425, 426, 427,
                                 194, 196, 195, 190, 186, 180]),
}

_libc = None


def _sys(name: str, *args) -> int:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    fn = getattr(_libc, name)
    ret = fn(*args)
    if ret == -1:
        err = ctypes.get_errno()
        raise OSError(err, f"{name}{tuple(a.decode() if isinstance(a, bytes) else a for a in args)}"
                           f": {os.strerror(err)}")
    return ret


def _prctl(option: int, arg: int = 0) -> None:
    _sys("prctl", ctypes.c_int(option), ctypes.c_ulong(arg), ctypes.c_ulong(0),
         ctypes.c_ulong(0), ctypes.c_ulong(0))


def _mount(source, target, fstype, flags, data=None) -> None:
    b = (lambda s: None if s is None else s.encode())
    _sys("mount", b(source), b(target), b(fstype), ctypes.c_ulong(flags), b(data))


def _child_main() -> None:
    cfg = json.loads(sys.argv[1])
    role, limits = cfg["role"], cfg["limits"]
    try:
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # if the caller dies, so do we
        if cfg["mode"] == "namespaces":
            flags = sum(_CLONE[n] for n in ("NEWNS", "NEWPID", "NEWNET", "NEWIPC", "NEWUTS"))
            _unshare(flags, root=os.geteuid() == 0)
        else:
            _prctl(PR_SET_CHILD_SUBREAPER, 1)  # orphans of the sandbox become ours to reap
        alive = _supervise(cfg["fds"])  # returns in the child, the sandbox proper
        if cfg["mode"] == "namespaces":
            _build_root(cfg["dir"], cfg["uid"], cfg["limits"]["disk_mb"])
        else:
            os.chdir(cfg["dir"])
        _limit(limits)
        _drop_privileges(cfg["uid"])
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # again: a uid change clears it
        if _parent_gone(alive):  # it died before we asked to die with it
            os._exit(71)
        if role == "judge":
            _prctl(PR_SET_DUMPABLE, 0)  # no ptrace or /proc/<pid>/mem, even by the same uid
        _prctl(PR_SET_NO_NEW_PRIVS, 1)
        _seccomp(required=cfg["mode"] == "uid")
    except Exception as exc:  # a sandbox that is not fully built never runs anything
        sys.stderr.write(f"sandbox setup failed: {exc}\n")
        os._exit(70)
    if role == "probe":
        import collections, hashlib, math, random, re, string, typing  # noqa: F401
        sys.stdout.write("ok\n")
        sys.stdout.flush()
        os._exit(0)
    if role == "judge":
        _judge(*cfg["fds"])
    else:
        _solve(*cfg["fds"])


def _unshare(flags: int, root: bool) -> None:
    """New namespaces; when not root, also a user namespace in which we are root (uid 0 inside
    is our uid outside), which owns the others and gives the capabilities to set them up."""
    outer_uid, outer_gid = os.getuid(), os.getgid()
    _sys("unshare", ctypes.c_int(flags | (0 if root else _CLONE["NEWUSER"])))
    if not root:
        for name, text in (("setgroups", "deny"), ("uid_map", f"0 {outer_uid} 1"),
                           ("gid_map", f"0 {outer_gid} 1")):
            with open(f"/proc/self/{name}", "w") as fh:
                fh.write(text)


def _supervise(fds) -> int:
    """Fork. The child returns (after a new PID namespace, it is that namespace's PID 1) with a
    pipe that reaches EOF when we are gone. We stay trusted and privileged outside the sandbox:
    on SIGTERM from the caller we SIGKILL the child, then reap every descendant that comes to us
    (a PID namespace dies with its PID 1; as a subreaper we inherit orphans), so no zombie of a
    sandbox uid outlives the run, and exit with the child's status."""
    alive_r, alive_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(alive_w)
        return alive_r
    os.close(alive_r)
    for fd in fds:
        os.close(fd)
    running = [pid]  # once reaped, its pid may be reused: never signal it then

    stopped = []

    def stop(*_):
        if not stopped:  # once is enough: a flood of SIGTERMs must not nest kills
            stopped.append(True)
            for p in running:
                os.kill(p, signal.SIGKILL)

    signal.signal(signal.SIGTERM, stop)
    code = 1
    while True:
        try:  # wait, but leave it a zombie: until reaped, its pid cannot be reused or vanish
            child = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOWAIT).si_pid
        except ChildProcessError:
            os._exit(code)
        # Reap with SIGTERM blocked (pthread_sigmask runs a pending handler first, while the
        # child is still a zombie), so that `stop` never signals a pid already reaped.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        _, status = os.waitpid(child, 0)
        if child == pid:
            running.clear()
            code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})


def _parent_gone(alive: int) -> bool:
    os.set_blocking(alive, False)
    try:
        gone = os.read(alive, 1) == b""
    except BlockingIOError:
        gone = False
    os.close(alive)
    return gone


def _build_root(new: str, uid, disk_mb: int) -> None:
    os.umask(0o022)
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    _mount("tmpfs", new, "tmpfs", MS_NOSUID | MS_NODEV, "mode=755,size=1m,nr_inodes=4096")
    top = ["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc"]  # links kept
    ours = [sys.base_prefix, os.path.dirname(os.path.realpath(sys.executable)), *sys.path]
    wanted = {p for p in top if os.path.lexists(p)}
    wanted |= {os.path.realpath(p) for p in ours if p and os.path.isdir(p)}
    bound: list[str] = []
    for path in sorted(wanted, key=len):
        if any(path == b or path.startswith(b.rstrip("/") + "/") for b in bound):
            continue
        target = new + path
        if os.path.islink(path):  # e.g. /bin -> usr/bin on merged-/usr systems
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.symlink(os.readlink(path), target)
            continue
        if not os.path.isdir(path):
            continue
        os.makedirs(target, exist_ok=True)
        _mount(path, target, None, MS_BIND | MS_REC)
        bound.append(path)
    for mountpoint, opts in _mounts_under(new):  # every bind, and what is mounted inside it
        flags = MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV
        flags |= sum(v for k, v in _MOUNT_OPTS.items() if k in opts)
        if mountpoint != new:
            _mount(None, mountpoint, None, flags)
    for d in ("dev", "proc", "tmp", "var"):
        os.mkdir(f"{new}/{d}", 0o755)
    for dev in ("null", "zero", "full", "random", "urandom"):
        open(f"{new}/dev/{dev}", "w").close()
        _mount(f"/dev/{dev}", f"{new}/dev/{dev}", None, MS_BIND)
    for link, to in (("dev/fd", "/proc/self/fd"), ("dev/stdin", "/proc/self/fd/0"),
                     ("dev/stdout", "/proc/self/fd/1"), ("dev/stderr", "/proc/self/fd/2"),
                     ("dev/shm", "/tmp"), ("var/tmp", "/tmp")):
        os.symlink(to, f"{new}/{link}")
    try:
        _mount("proc", f"{new}/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    except OSError:
        pass  # some containers refuse a new /proc to a user namespace: then there is none
    _mount("tmpfs", f"{new}/tmp", "tmpfs", MS_NOSUID | MS_NODEV,
           f"mode=700,size={disk_mb}m,nr_inodes=4096")
    if uid is not None:
        os.chown(f"{new}/tmp", uid, uid)
    _mount(None, new, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
    arch = _ARCH.get(platform.machine())
    if arch is None:
        raise OSError(errno.ENOSYS, f"pivot_root: unknown architecture {platform.machine()}")
    os.chdir(new)
    _sys("syscall", ctypes.c_long(arch[1]), b".", b".")  # pivot_root(".", "."): old root on top
    _sys("umount2", b".", ctypes.c_int(MNT_DETACH))  # ... and now gone
    os.chdir("/tmp")
    try:
        _sys("sethostname", b"sandbox", ctypes.c_size_t(7))
    except OSError:
        pass


def _mounts_under(top: str):
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            fields = line.split()
            mountpoint = fields[4].encode().decode("unicode_escape")
            if mountpoint == top or mountpoint.startswith(top + "/"):
                yield mountpoint, set(fields[5].split(","))


def _limit(limits: dict) -> None:
    cpu, mem = limits["cpu_s"], limits["memory_mb"] << 20
    for what, value in ((resource.RLIMIT_CPU, cpu), (resource.RLIMIT_AS, mem),
                        (resource.RLIMIT_FSIZE, limits["disk_mb"] << 20),
                        (resource.RLIMIT_NOFILE, 64), (resource.RLIMIT_CORE, 0)):
        resource.setrlimit(what, (value, value))
    if limits["max_procs"]:
        resource.setrlimit(resource.RLIMIT_NPROC, (limits["max_procs"], limits["max_procs"]))


def _drop_privileges(uid) -> None:
    with open("/proc/sys/kernel/cap_last_cap") as fh:
        last = int(fh.read())
    for cap in range(last + 1):
        _prctl(PR_CAPBSET_DROP, cap)
    _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    if uid is not None:  # root: become a fresh uid, which leaves no capability
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    header = struct.pack("Ii", 0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    _sys("capset", ctypes.c_char_p(header), ctypes.c_char_p(bytes(24)))
    if os.geteuid() == 0 and uid is not None:
        raise OSError(errno.EPERM, "still root after dropping privileges")


def _seccomp(required: bool) -> None:
    arch = _ARCH.get(platform.machine())
    if arch is None:
        if required:  # without namespaces, seccomp is what keeps the network closed
            raise OSError(errno.ENOSYS, f"no seccomp filter for {platform.machine()}")
        return
    audit_arch, _, denied = arch
    ld, jeq, jge, ret = 0x20, 0x15, 0x35, 0x06
    allow, kill, eperm = 0x7FFF0000, 0x80000000, 0x00050000 | errno.EPERM
    prog = [(ld, 0, 0, 4), (jeq, 1, 0, audit_arch), (ret, 0, 0, kill), (ld, 0, 0, 0)]
    if audit_arch == 0xC000003E:
        prog += [(jge, 0, 1, 0x40000000), (ret, 0, 0, kill)]  # no x32 system calls
    for nr in denied:
        prog += [(jeq, 0, 1, nr), (ret, 0, 0, eperm)]
    prog.append((ret, 0, 0, allow))
    code = b"".join(struct.pack("HBBI", *insn) for insn in prog)
    buf = ctypes.create_string_buffer(code, len(code))
    fprog = struct.pack("HxxxxxxP", len(prog), ctypes.addressof(buf))
    _sys("prctl", ctypes.c_int(PR_SET_SECCOMP), ctypes.c_ulong(2), ctypes.c_char_p(fprog),
         ctypes.c_ulong(0), ctypes.c_ulong(0))


def _solve(calls: int, answers: int) -> None:
    """Solver: run the untrusted source, then answer calls of its entry point with plain data.
    Nothing here is trusted after `exec`: the judge believes only the data it can decode."""
    import traceback
    source = sys.stdin.buffer.read().decode(errors="replace")
    namespace: dict = {"__name__": "__main__"}
    failure = None
    try:
        exec(compile(source, "<solution>", "exec"), namespace)
    except BaseException as exc:  # SystemExit too: the solution could not be loaded
        traceback.print_exc()
        failure = f"the solution failed to load: {type(exc).__name__}: {exc}"
    while True:
        request = _receive(calls)
        if request is None:
            os._exit(0)
        try:
            if failure:
                raise RuntimeError(failure)
            entry, args, kwargs = _decode(request)
            fn = namespace.get(entry)
            if not callable(fn):
                raise NameError(f"the solution defines no function {entry!r}")
            reply = b'["value",' + _encode(fn(*args, **kwargs)) + b"]"
        except BaseException as exc:
            reply = json.dumps(["raised", f"{type(exc).__name__}: {exc}"[:2000]]).encode()
        if len(reply) > MESSAGE_LIMIT:
            reply = json.dumps(["raised", "the result is over the message limit"]).encode()
        _send(answers, reply)


class CandidateError(Exception):
    """The solution raised, returned something that is not plain data, or went away."""


def _judge(answers: int, calls: int, verdict_fd: int) -> None:
    """Judge: run the trusted prelude and tests, calling the solution only through the pipe."""
    task = json.loads(sys.stdin.buffer.read().decode())
    entry = task["entry_point"]

    def candidate(*args, **kwargs):
        try:
            _send(calls, _encode([entry, list(args), kwargs]))
            reply = _receive(answers)
        except (OSError, ValueError) as exc:
            raise CandidateError(f"no answer from the solution: {exc}") from None
        if reply is None:
            raise CandidateError("the solution's process ended")
        try:
            tag, payload = _decode(reply)
            if tag not in ("value", "raised") or tag == "raised" and type(payload) is not str:
                raise ValueError("malformed answer")
        except (ValueError, TypeError, RecursionError) as exc:
            raise CandidateError(f"the solution's answer is not plain data: {exc}") from None
        if tag == "raised":
            raise CandidateError(f"the solution raised {payload}")
        return payload

    candidate.__name__ = entry
    namespace: dict = {"__name__": "__main__"}
    try:
        exec(compile(task["prelude"], "<prompt>", "exec"), namespace)
        exec(compile(task["tests"], "<tests>", "exec"), namespace)
        namespace[entry] = candidate
        namespace["check"](candidate)
        result = {"passed": True, "reason": ""}
    except BaseException as exc:
        line = next((f.lineno for f in _frames(exc.__traceback__) if f.filename == "<tests>"), None)
        where = f" (test line {line})" if line else ""
        result = {"passed": False, "reason": f"{type(exc).__name__}{where}: {exc}"[:2000]}
    with os.fdopen(verdict_fd, "w") as fh:
        fh.write(json.dumps(result))
    os._exit(0)


def _frames(tb):
    import traceback
    return list(reversed(traceback.extract_tb(tb))) if tb else []


if __name__ == "__main__":
    _child_main()
