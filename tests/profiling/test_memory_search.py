"""The paper's CUDA memory search against a simulated allocator limit (there is no GPU here)."""
import math

import pytest

from finetune.profiling.memory_search import OK, OOM, search_min_cap


class Allocator:
    """A device on which a run needs `need_gib`; optional flaky OOMs at caps that do fit."""

    def __init__(self, need_gib, flaky_first_calls=0):
        self.need = need_gib
        self.flaky_left = {}
        self.flaky_first_calls = flaky_first_calls
        self.calls = []

    def __call__(self, cap):
        self.calls.append(cap)
        if cap < self.need:
            return OOM
        left = self.flaky_left.setdefault(cap, self.flaky_first_calls)
        if left:
            self.flaky_left[cap] = left - 1
            return OOM
        return OK


@pytest.mark.parametrize("need", [0.2, 1.0, 1.01, 5.5, 17.0, 39.99, 40.0, 79.3])
def test_finds_smallest_whole_gib_that_fits(need):
    alloc = Allocator(need)
    result = search_min_cap(alloc, max_gib=80.0, oom_retries=0)
    assert result.cap_gib == max(1, math.ceil(need))
    assert alloc(result.cap_gib) == OK
    if result.cap_gib > 1:
        assert alloc(result.cap_gib - 1) == OOM
    # one check at the top plus a bisection of 80 caps
    assert len(alloc.calls) - 2 <= 1 + math.ceil(math.log2(80))


def test_granularity_is_configurable():
    result = search_min_cap(Allocator(5.3), max_gib=16.0, granularity_gib=0.25)
    assert result.cap_gib == 5.5
    assert result.granularity_gib == 0.25
    assert search_min_cap(Allocator(5.3), max_gib=16.0, granularity_gib=2).cap_gib == 6


def test_probes_record_every_call_in_order():
    result = search_min_cap(Allocator(5.5), max_gib=8.0, oom_retries=0)
    assert [p.cap_gib for p in result.probes] == [8, 4, 6, 5]
    assert [p.outcome for p in result.probes] == [OK, OOM, OK, OOM]
    assert result.to_dict()["probes"][0] == [8, OK]


def test_flaky_oom_is_retried_before_it_counts():
    # Every cap that fits OOMs once first (fragmentation): one retry recovers the true answer.
    assert search_min_cap(Allocator(5.5, flaky_first_calls=1), 16.0, oom_retries=1).cap_gib == 6
    # Without retries the flaky OOMs read as "too small" and the answer is too high.
    assert search_min_cap(Allocator(5.5, flaky_first_calls=1), 16.0, oom_retries=0).cap_gib is None


def test_real_ooms_cost_one_call_plus_retries():
    alloc = Allocator(15.5)
    search_min_cap(alloc, 16.0, oom_retries=2)
    ooms = [c for c in alloc.calls if c < 15.5]
    assert all(ooms.count(c) == 3 for c in set(ooms))


def test_does_not_fit_on_the_device():
    result = search_min_cap(Allocator(100.0), max_gib=80.0, oom_retries=0)
    assert result.cap_gib is None and "80" in result.reason
    assert search_min_cap(Allocator(0.1), max_gib=0.5).cap_gib is None


def test_non_oom_failures_propagate_instead_of_reading_as_too_small():
    def broken(cap):
        raise RuntimeError("CUDA error: illegal memory access")

    with pytest.raises(RuntimeError, match="illegal memory access"):
        search_min_cap(broken, 8.0)
    with pytest.raises(ValueError, match="expected 'ok' or 'oom'"):
        search_min_cap(lambda cap: "maybe", 8.0)


def test_bad_arguments():
    with pytest.raises(ValueError, match="granularity"):
        search_min_cap(Allocator(1), 8.0, granularity_gib=0)
    with pytest.raises(ValueError, match="oom_retries"):
        search_min_cap(Allocator(1), 8.0, oom_retries=-1)
