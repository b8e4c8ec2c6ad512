"""Gang placement: all replicas or none, one leaf switch, whole NVLink domains, tight fit."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from migoperator.planning.job_placer import (
    JobRequest,
    NodeCapacity,
    Placement,
    Unplaced,
    job_order,
    place_job,
    place_jobs,
)

GPU = "nvidia.com/gpu"


def node(name: str, free: int, leaf: str | None = None) -> NodeCapacity:
    return NodeCapacity(name=name, free={GPU: free}, leaf=leaf)


def job(key: str, replicas: int, per: int, priority: int = 0, created: float = 0.0
        ) -> JobRequest:
    return JobRequest(key=key, resource=GPU, per_replica=per, replicas=replicas,
                      priority=priority, created=created)


def test_two_full_node_replicas_go_to_the_two_free_nodes() -> None:
    nodes = [node("dgx-0", 8), node("dgx-1", 0), node("dgx-2", 8)]
    (result,) = place_jobs([job("ns/train", 2, 8)], nodes)
    assert result == Placement("ns/train", ("dgx-0", "dgx-2"))


def test_a_gang_that_does_not_fit_takes_nothing() -> None:
    nodes = [node("dgx-0", 8), node("dgx-1", 4), node("dgx-2", 0)]
    big, small = place_jobs([job("ns/big", 2, 8, priority=1), job("ns/small", 1, 8)], nodes)
    assert isinstance(big, Unplaced) and "needs 2 replica(s) of 8" in big.reason
    assert small == Placement("ns/small", ("dgx-0",))


def test_replicas_share_a_node_before_spreading() -> None:
    nodes = [node("dgx-0", 8), node("dgx-1", 8)]
    (result,) = place_jobs([job("ns/j", 4, 2)], nodes)
    assert isinstance(result, Placement) and set(result.nodes) == {"dgx-0"}


def test_the_last_node_is_the_tightest_fit() -> None:
    nodes = [node("dgx-0", 8), node("dgx-1", 2), node("dgx-2", 4)]
    (result,) = place_jobs([job("ns/j", 1, 2)], nodes)
    assert result == Placement("ns/j", ("dgx-1",))


def test_one_leaf_switch_is_preferred_over_fewer_nodes_across_leaves() -> None:
    nodes = [node("a-0", 8, "leaf-a"), node("b-0", 8, "leaf-b"), node("b-1", 8, "leaf-b"),
             node("a-1", 4, "leaf-a")]
    (result,) = place_jobs([job("ns/j", 2, 8)], nodes)
    assert result == Placement("ns/j", ("b-0", "b-1"))


def test_a_gang_spans_leaves_only_when_no_leaf_holds_it() -> None:
    nodes = [node("a-0", 8, "leaf-a"), node("b-0", 8, "leaf-b")]
    (result,) = place_jobs([job("ns/j", 2, 8)], nodes)
    assert isinstance(result, Placement) and sorted(result.nodes) == ["a-0", "b-0"]


def test_priority_then_age_orders_the_queue() -> None:
    jobs = [job("ns/old", 1, 1, created=1), job("ns/new", 1, 1, created=2),
            job("ns/urgent", 1, 1, priority=5, created=3)]
    assert [j.key for j in job_order(jobs)] == ["ns/urgent", "ns/old", "ns/new"]


def test_node_selector_limits_the_nodes() -> None:
    nodes = [NodeCapacity("dgx-0", {GPU: 8}, labels={"pool": "a"}),
             NodeCapacity("dgx-1", {GPU: 8}, labels={"pool": "b"})]
    request = JobRequest("ns/j", GPU, 8, 1, selector=(("pool", "b"),))
    assert place_job(request, nodes, {n.name: dict(n.free) for n in nodes}) == Placement(
        "ns/j", ("dgx-1",))


clusters = st.lists(st.tuples(st.integers(0, 8), st.sampled_from(["a", "b", None])),
                    min_size=1, max_size=6)
queues = st.lists(st.tuples(st.integers(1, 4), st.sampled_from([1, 2, 4, 8]),
                            st.integers(-1, 1)), min_size=1, max_size=8)


@settings(max_examples=200, deadline=None)
@given(clusters, queues)
def test_gangs_are_whole_and_capacity_is_never_exceeded(
        cluster: list[tuple[int, str | None]], queue: list[tuple[int, int, int]]) -> None:
    nodes = [node(f"dgx-{i}", free, leaf) for i, (free, leaf) in enumerate(cluster)]
    jobs = [job(f"ns/j{i}", r, p, prio, float(i)) for i, (r, p, prio) in enumerate(queue)]
    results = place_jobs(jobs, nodes)
    used: Counter[str] = Counter()
    by_key = {j.key: j for j in jobs}
    for result in results:
        if isinstance(result, Placement):
            request = by_key[result.key]
            assert len(result.nodes) == request.replicas
            for name in result.nodes:
                used[name] += request.per_replica
    for n in nodes:
        assert used[n.name] <= n.free[GPU]


@settings(max_examples=200, deadline=None)
@given(clusters, st.integers(1, 6), st.sampled_from([1, 2, 4, 8]))
def test_a_gang_that_fits_is_placed_on_the_fewest_nodes_of_one_leaf(
        cluster: list[tuple[int, str | None]], replicas: int, per: int) -> None:
    nodes = [node(f"dgx-{i}", free, None) for i, (free, _) in enumerate(cluster)]
    slots = sorted((n.free[GPU] // per for n in nodes), reverse=True)
    (result,) = place_jobs([job("ns/j", replicas, per)], nodes)
    if sum(slots) < replicas:
        assert isinstance(result, Unplaced)
        return
    fewest = next(k for k in range(1, len(slots) + 1) if sum(slots[:k]) >= replicas)
    assert isinstance(result, Placement) and len(result.distinct_nodes) == fewest
