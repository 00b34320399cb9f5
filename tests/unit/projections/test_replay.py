"""How the rebuild splits its work: partitions into reader shards and buckets into loader
shares of about equal records (pure)."""

from __future__ import annotations

from aiokafka.structs import TopicPartition
from hypothesis import given
from hypothesis import strategies as st

from projections.replay import shard_partitions, share_out, staging_name


@given(st.lists(st.integers(0, 10_000), max_size=40), st.integers(1, 6))
def test_every_partition_goes_to_exactly_one_of_the_shards(sizes: list[int], shards: int) -> None:
    ends = {TopicPartition(f"t{i % 3}", i): n for i, n in enumerate(sizes)}
    groups = shard_partitions(ends, shards)
    assert len(groups) == shards
    assert sorted(tp for g in groups for tp in g) == sorted(ends)
    loads = [sum(ends[tp] for tp in g) for g in groups]
    # greedy by size: no shard carries more than the fair share plus its largest partition
    assert max(loads) <= sum(sizes) / shards + max(sizes, default=0)


@given(st.lists(st.integers(1, 10_000), max_size=60), st.integers(1, 6))
def test_every_bucket_goes_to_exactly_one_loader(sizes: list[int], loaders: int) -> None:
    shares = share_out(sizes, loaders)
    assert len(shares) == loaders
    assert sorted(b for s in shares for b in s) == list(range(len(sizes)))
    loads = [sum(sizes[b] for b in s) for s in shares]
    assert max(loads) <= sum(sizes) / loaders + max(sizes, default=0)


def test_a_staging_schema_is_a_fresh_valid_name_next_to_its_target() -> None:
    long = "x" * 63
    assert staging_name("hub").startswith("hub_rb") and staging_name("hub") != staging_name("hub")
    assert len(staging_name(long)) <= 63 and staging_name(long).startswith("x" * 50 + "_rb")
