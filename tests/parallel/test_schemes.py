"""Load-balancing schemes: pure choosers over loads in least-recently-used order."""

from __future__ import annotations

from collections import Counter
from random import Random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from parallel.scheduler import SCHEMES, Scheme, leastload, lru, plainrandom, twobin, weighted

ALL = list(SCHEMES.values())


def _picks(scheme: Scheme, loads: list[int], n: int = 2000, seed: int = 7) -> Counter[int]:
    rng = Random(seed)
    return Counter(scheme(loads, rng) for _ in range(n))


def test_the_schemes_are_found_by_their_configuration_names() -> None:
    assert dict(SCHEMES) == {
        "leastload": leastload,
        "lru": lru,
        "plainrandom": plainrandom,
        "twobin": twobin,
        "weighted": weighted,
    }


def test_leastload_picks_the_lowest_load_and_breaks_ties_by_lowest_index() -> None:
    assert leastload([3, 1, 2], Random(0)) == 1
    assert leastload([2, 0, 5, 0], Random(0)) == 1
    assert leastload([4, 4, 4], Random(0)) == 0


def test_lru_takes_the_head_of_the_line_whatever_the_loads() -> None:
    assert lru([9, 0, 0], Random(0)) == 0


@pytest.mark.parametrize("scheme", [leastload, lru])
def test_deterministic_schemes_never_draw_from_the_rng(scheme: Scheme) -> None:
    rng = Random(5)
    before = rng.getstate()
    scheme([1, 0, 2], rng)
    assert rng.getstate() == before


def test_plainrandom_is_uniform_and_reproducible() -> None:
    rng, twin = Random(11), Random(11)
    for _ in range(50):
        assert plainrandom([5, 0, 0, 0], rng) == twin.randrange(4)
    counts = _picks(plainrandom, [100, 0, 0, 0])
    assert set(counts) == {0, 1, 2, 3}
    assert min(counts.values()) > 400


def test_twobin_takes_the_less_recently_used_of_two_random_draws() -> None:
    rng, twin = Random(3), Random(3)
    for _ in range(50):
        assert twobin([0] * 5, rng) == min(twin.randrange(5), twin.randrange(5))
    counts = _picks(twobin, [0] * 5)
    assert counts[0] > counts[2] > counts[4]


def test_weighted_prefers_idle_engines_but_stays_random() -> None:
    counts = _picks(weighted, [0, 3, 0])
    assert set(counts) == {0, 1, 2}
    assert counts[1] < counts[0] / 5
    assert counts[1] < counts[2] / 5


def test_weighted_returns_the_less_loaded_of_its_two_draws() -> None:
    # with two candidates, the busy one wins only when both draws are the busy one
    counts = _picks(weighted, [0, 1], n=4000)
    p_busy = (1 / 2) / (1 + 1 / 2)
    assert counts[1] / 4000 == pytest.approx(p_busy**2, abs=0.03)


@pytest.mark.parametrize("scheme", ALL)
def test_every_scheme_is_reproducible_with_a_seeded_rng(scheme: Scheme) -> None:
    loads = [2, 0, 1, 0, 3]
    assert _picks(scheme, loads, n=50, seed=1) == _picks(scheme, loads, n=50, seed=1)


@pytest.mark.parametrize("scheme", ALL)
def test_every_scheme_refuses_an_empty_candidate_list(scheme: Scheme) -> None:
    with pytest.raises(ValueError, match="at least one candidate"):
        scheme([], Random(0))


@given(
    loads=st.lists(st.integers(0, 50), min_size=1, max_size=20),
    seed=st.integers(0, 2**32),
    scheme=st.sampled_from(ALL),
)
def test_every_scheme_returns_an_index_into_the_loads(
    loads: list[int], seed: int, scheme: Scheme
) -> None:
    index = scheme(loads, Random(seed))
    assert 0 <= index < len(loads)
    if scheme is leastload:
        assert loads[index] == min(loads)
        assert loads.index(min(loads)) == index
