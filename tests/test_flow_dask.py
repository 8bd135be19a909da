"""Scale-out: the mapped stages on a real dask.distributed LocalCluster of two worker
processes (through prefect-dask) give the same files as the local process pool."""
from __future__ import annotations

import pytest

from orchestration_support import small_recipe, snapshot

pytestmark = pytest.mark.slow


def test_local_dask_cluster_equals_local_run(tmp_path, corpora, prefect_api):
    from distributed import Client, LocalCluster, get_task_stream

    from flows.corpus import run_corpus

    recipe = small_recipe(tmp_path, corpora)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client, get_task_stream(client) as stream:
        on_dask = run_corpus(str(recipe), str(tmp_path / "dask"), workers=2, cards_dir=None, dask=cluster.scheduler_address)
    # every mapped unit (4 sources, each clean shard) ran on the cluster, spread over both workers
    units = on_dask.resume["ingest"].units + on_dask.resume["clean"].units
    assert len(stream.data) >= units
    assert len({t["worker"] for t in stream.data}) == 2
    local = run_corpus(str(recipe), str(tmp_path / "local"), workers=2, cards_dir=None)
    assert on_dask.resume["clean"].units >= 5
    assert snapshot(tmp_path / "dask") == snapshot(tmp_path / "local")
    assert on_dask.stages.dedup.docs_out == local.stages.dedup.docs_out


def test_local_n_spec_starts_its_own_cluster(tmp_path, corpora, prefect_api):
    from flows.corpus import make_task_runner, run_corpus

    runner = make_task_runner(2, "local:2")
    assert runner.cluster_kwargs["n_workers"] == 2
    recipe = small_recipe(tmp_path, corpora, sources=[
        {"name": "wt2", "type": "text", "paths": [str(corpora / "classic" / "wiki.txt")],
         "separator_regex": r"^ = [^=].* = $"}])
    m = run_corpus(str(recipe), str(tmp_path / "out"), workers=2, cards_dir=None, dask="local:2")
    assert m.stages.ingest.docs_out == 40  # the 40 generated articles
