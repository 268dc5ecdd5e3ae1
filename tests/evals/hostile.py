"""Hostile completions of `add(a, b)`, and a driver that runs them all in `evals.sandbox`.

Standard library only, so that the driver also runs as an unprivileged user with the system
Python: `python hostile.py SANDBOX_PY MODE` prints one JSON object. Most programs return the right
answer only if their attack worked, so an attack that gets through shows up as a pass; the
driver also reports the harm it can see from outside (a connection, a changed file, leftovers).
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

PROMPT = 'def add(a, b):\n    """Return a + b."""\n'
TESTS = "def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(-1, 1) == 0\n"
TIMEOUT_S = 2.0
MEMORY_MB = 512
SHM_SEGMENTS = 24  # of 32 MB: 768 MB, past MEMORY_MB
# folders anyone may write to, which a run must leave as it found them
WRITABLE = ("/tmp", "/dev/shm", "/var/tmp", "/run/lock")
FLOOD_BYTES = 1 << 30
REPOSIX = "    import sys\n    sys.modules.pop('posix', None)\n    import posix\n"  # guards undone

# name -> (completion, the status it must end with); none may pass
HOSTILE = {
    # forging the verdict (item 3)
    "steal the runner's token and exit 0": (
        "    import sys, os\n    f = sys._getframe()\n    while f is not None:\n"
        "        for v in list(f.f_locals.values()):\n"
        "            if isinstance(v, str) and len(v) >= 16:\n"
        "                sys.stdout.write('\\n' + v + '\\n')\n"
        "        f = f.f_back\n    sys.stdout.flush()\n    sys.modules.pop('posix', None)\n"
        "    import posix\n    posix._exit(0)\n", "failed"),
    "write a verdict to every descriptor": (
        "    import os, sys\n    for fd in range(64):\n        try:\n"
        "            os.write(fd, b'{\"passed\": true, \"reason\": \"\"}\\n')\n"
        "        except OSError:\n            pass\n    sys.modules.pop('posix', None)\n"
        "    import posix\n    posix._exit(0)\n", "failed"),
    "exit 0 before the tests (module level)": (
        "    return 0\nimport sys\nsys.modules.pop('posix', None)\nimport posix\nposix._exit(0)\n",
        "failed"),
    "exit 0 in the call": ("    import sys\n    sys.exit(0)\n", "failed"),
    "always-equal result": (
        "    class Always:\n        def __eq__(self, other):\n            return True\n"
        "    return Always()\n", "failed"),
    "patch the check through the stack": (
        "    import sys\n    f = sys._getframe(1)\n    f.f_globals['check'] = lambda c: None\n"
        "    raise SystemExit(0)\n", "failed"),
    # resources
    "infinite loop": ("    while True:\n        pass\n", "timeout"),
    "fork bomb": (REPOSIX + "    while True:\n        try:\n            posix.fork()\n"
                  "        except OSError:\n            pass\n", "timeout"),
    "fork bomb (_posixsubprocess)": (
        "    import _posixsubprocess, os\n    while True:\n        _posixsubprocess.fork_exec()\n",
        "failed"),
    "memory hog": ("    x = bytearray(8 << 30)\n    return a + b\n", "failed"),
    "fill the disk": ("    with open('big', 'wb') as f:\n        f.write(b'x' * (200 << 20))\n"
                      "    return a + b\n", "failed"),
    # processes that outlive the program (item 4)
    "setsid background process": (
        "    import sys\n    sys.modules.pop('subprocess', None)\n    import subprocess\n"
        "    subprocess.Popen(['sleep', '@MARKER@'], start_new_session=True, stdout=sys.stdout,"
        " stderr=sys.stderr)\n    return 0\n", "failed"),
    "fork, setsid, exec": (
        REPOSIX + "    if posix.fork() == 0:\n        posix.setsid()\n"
        "        posix.execv('/bin/sleep', ['sleep', '@MARKER@'])\n    return 0\n", "failed"),
    # output (item 5)
    "print 1 GB": ("    import sys\n    chunk = 'x' * 65536\n"
                   "    for _ in range(@FLOOD@ // 65536):\n        sys.stdout.write(chunk)\n"
                   "    return a + b\n", "failed"),
    "1 GB to stderr": ("    import os\n    chunk = b'x' * 65536\n"
                       "    for _ in range(@FLOOD@ // 65536):\n        os.write(2, chunk)\n"
                       "    return a + b\n", "failed"),
    # the machine and the caller (item 6)
    "delete outside (os.remove)": ("    import os\n    os.remove('@SENTINEL@')\n    return a + b\n",
                                   "failed"),
    "delete outside (pathlib)": ("    import pathlib\n    pathlib.Path('@SENTINEL@').unlink()\n"
                                 "    return a + b\n", "failed"),
    "delete outside (posix re-import)": (REPOSIX + "    posix.unlink('@SENTINEL@')\n"
                                         "    return a + b\n", "failed"),
    "overwrite outside": ("    open('@SENTINEL@', 'w').write('pwned')\n    return a + b\n",
                          "failed"),
    "socket to localhost": ("    import socket\n    socket.create_connection(('127.0.0.1', @PORT@),"
                            " timeout=1)\n    return a + b\n", "failed"),
    "raw socket (_socket re-import)": (
        "    import sys\n    sys.modules.pop('_socket', None)\n    import _socket\n"
        "    s = _socket.socket()\n    s.settimeout(1)\n    s.connect(('127.0.0.1', @PORT@))\n"
        "    return a + b\n", "failed"),
    "signal the caller (posix re-import)": (
        REPOSIX + "    import os\n    ppid = os.getppid()\n    if ppid > 1:\n"
        "        posix.kill(ppid, 0)\n        return a + b\n    return 0\n", "failed"),
    "signal any other process": (
        "    import os\n    for pid in os.listdir('/proc'):\n"
        "        if pid.isdigit() and int(pid) != os.getpid():\n            try:\n"
        "                os.kill(int(pid), 0)\n                return a + b\n"
        "            except OSError:\n                pass\n    return 0\n", "failed"),
    "kill everything (kill -1)": (REPOSIX + "    posix.kill(-1, 9)\n    return 0\n", "failed"),
    "read the caller's environment": (
        "    import glob\n    for p in glob.glob('/proc/*/environ'):\n        try:\n"
        "            if b'@CANARY@' in open(p, 'rb').read():\n                return a + b\n"
        "        except OSError:\n            pass\n    return 0\n", "failed"),
    "own environment": ("    import os\n    return a + b if '@CANARY@' in str(os.environ) else 0\n",
                        "failed"),
    "read the caller's secret file": (
        "    return a + b if '@CANARY@' in open('@SECRET@').read() else 0\n", "failed"),
    "System V shared memory past the memory limit": (
        "    import ctypes\n    libc = ctypes.CDLL(None, use_errno=True)\n"
        "    libc.shmat.restype = ctypes.c_void_p\n    made = 0\n"
        "    for i in range(@SHM_SEGMENTS@):\n"
        "        sid = libc.shmget(@SHM_KEY@ + i, 32 << 20, 0o1600)\n"  # IPC_CREAT | 0600
        "        if sid < 0:\n            break\n"
        "        p = libc.shmat(sid, None, 0)\n"
        "        if p is None or p == ctypes.c_void_p(-1).value:\n            break\n"
        "        ctypes.memset(p, 1, 32 << 20)\n        libc.shmdt(ctypes.c_void_p(p))\n"
        "        made += 1\n    return a + b if made == @SHM_SEGMENTS@ else 0\n", "failed"),
    "files in /tmp and /dev/shm": (
        "    for d in @WRITABLE@:\n        try:\n"
        "            open(d + '/@MARKER@', 'w').write('x')\n        except OSError:\n"
        "            pass\n    return 0\n", "failed"),
}
# the sandbox still works: these must pass
CONTROLS = {
    "correct": "    return a + b\n",
    "correct, prints, uses the standard library": (
        "    import math, os, tempfile\n    print('hello')\n"
        "    with tempfile.TemporaryFile() as f:\n        f.write(b'ok')\n"
        "    return int(math.fsum([a, b]))\n"),
}


def main(sandbox_py: str, mode: str) -> dict:
    spec = importlib.util.spec_from_file_location("sandbox_under_test", sandbox_py)
    sandbox = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = sandbox
    spec.loader.exec_module(sandbox)
    try:
        isolation = sandbox.isolation() if mode == "auto" else mode
    except sandbox.SandboxUnavailable as exc:
        return {"unavailable": str(exc)}
    canary = os.environ["HF_TOKEN"]
    marker = f"30.{os.getpid()}{int(time.time() * 1000) % 100000}"  # also a `sleep` duration
    work = tempfile.mkdtemp(prefix="spiel-hostile-")
    try:
        return _attack(sandbox, isolation, canary, marker, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _attack(sandbox, isolation: str, canary: str, marker: str, work: str) -> dict:
    os.chmod(work, 0o755)
    sentinel, secret = os.path.join(work, "outside.txt"), os.path.join(work, "token")
    with open(sentinel, "w") as fh:
        fh.write("keep")
    os.chmod(sentinel, 0o644)
    with open(secret, "w") as fh:
        fh.write(canary)
    os.chmod(secret, 0o600)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    shm_key = int(marker.replace(".", "")) % (1 << 30)
    subst = {"@SENTINEL@": sentinel, "@SECRET@": secret, "@CANARY@": canary, "@MARKER@": marker,
             "@PORT@": str(listener.getsockname()[1]), "@FLOOD@": str(FLOOD_BYTES),
             "@SHM_KEY@": str(shm_key), "@SHM_SEGMENTS@": str(SHM_SEGMENTS),
             "@WRITABLE@": repr(WRITABLE)}

    def fill(code):
        for k, v in subst.items():
            code = code.replace(k, v)
        return code

    def run(item):
        name, code = item
        start = time.monotonic()
        o = sandbox.check_function(PROMPT + fill(code), "add", TESTS, PROMPT, timeout_s=TIMEOUT_S,
                                   memory_mb=MEMORY_MB, isolation_mode=isolation)
        return name, {"passed": o.passed, "status": o.status, "detail": o.detail,
                      "seconds": round(time.monotonic() - start, 2)}

    programs = {**{k: v[0] for k, v in HOSTILE.items()}, **CONTROLS}
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(pool.map(run, programs.items()))
    listener.setblocking(False)
    connections = 0
    try:
        while True:
            listener.accept()[0].close()
            connections += 1
    except BlockingIOError:
        pass
    leftovers = [os.path.join(d, marker) for d in WRITABLE if os.path.lexists(os.path.join(d, marker))]
    leftovers += _remove_segments(range(shm_key, shm_key + SHM_SEGMENTS))
    with open(sentinel) as fh:
        sentinel_text = fh.read()
    return {"isolation": isolation, "uid": os.getuid(), "results": results, "marker": marker,
            "connections": connections, "sentinel": sentinel_text, "leftover_files": leftovers,
            "peak_rss_mb": _peak_rss_mb(),
            "canary": canary}


def _remove_segments(keys) -> list[str]:
    """System V shared memory segments with these keys that outlived the run, removed (the
    memory they hold is the machine's until then)."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    found = []
    try:
        with open("/proc/sysvipc/shm") as fh:
            lines = fh.readlines()[1:]
    except OSError:  # a kernel without System V IPC
        return found
    for line in lines:
        key, shmid = (int(x) for x in line.split()[:2])
        if key in keys:
            found.append(f"shm segment {key}")
            libc.shmctl(shmid, 0, None)  # IPC_RMID
    return found


def _peak_rss_mb() -> int:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss, not inherited from the
    process that forked us)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) // 1024
    return -1


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2])))
