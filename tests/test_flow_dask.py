"""Scale-out: the mapped stages on a real dask.distributed LocalCluster of two worker
processes (through prefect-dask) give the same files as the local process pool."""
from __future__ import annotations

import pytest

from orchestration_support import small_recipe, snapshot

pytestmark = pytest.mark.slow


def test_one_worker_two_processes_and_three_dask_workers_write_the_same_bytes(tmp_path, corpora, prefect_api):
    """Every stage runs on the engine, dedup and tokenize units included: the outputs are
    byte-identical whether one thread, two local processes or three Dask workers ran them."""
    from distributed import Client, LocalCluster, get_task_stream

    from flows.corpus import run_corpus

    recipe = small_recipe(tmp_path, corpora)
    with LocalCluster(n_workers=3, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client, get_task_stream(client) as stream:
        on_dask = run_corpus(str(recipe), str(tmp_path / "dask"), workers=3, cards_dir=None, dask=cluster.scheduler_address)
    # the global stages' units ran on the cluster too: per dedup shard a sign, a write and an
    # encode unit at least, besides the groups, candidates and verify units
    units = [t for t in stream.data if str(t["key"]).startswith("unit_task-")]
    assert len(units) >= 3 * on_dask.resume["clean"].units
    assert len({t["worker"] for t in stream.data}) == 3
    two = run_corpus(str(recipe), str(tmp_path / "two"), workers=2, cards_dir=None)
    one = run_corpus(str(recipe), str(tmp_path / "one"), workers=1, cards_dir=None)
    assert on_dask.resume["clean"].units >= 5
    assert snapshot(tmp_path / "dask") == snapshot(tmp_path / "two") == snapshot(tmp_path / "one")
    assert on_dask.stages.dedup.docs_out == two.stages.dedup.docs_out == one.stages.dedup.docs_out


def test_local_n_spec_starts_its_own_cluster(tmp_path, corpora, prefect_api):
    from flows.corpus import make_task_runner, run_corpus

    runner = make_task_runner(2, "local:2")
    assert runner.cluster_kwargs["n_workers"] == 2
    recipe = small_recipe(tmp_path, corpora, sources=[
        {"name": "wt2", "type": "text", "paths": [str(corpora / "classic" / "wiki.txt")],
         "separator_regex": r"^ = [^=].* = $"}])
    m = run_corpus(str(recipe), str(tmp_path / "out"), workers=2, cards_dir=None, dask="local:2")
    assert m.stages.ingest.docs_out == 40  # the 40 generated articles


def test_a_dask_run_ends_without_teardown_noise(tmp_path, corpora, prefect_api):
    """`opencorpus run --dask local:2` as a user runs it: the cluster's start and shutdown
    leave nothing on stderr (no CommClosedError, no traceback, no distributed chatter)."""
    import subprocess

    from orchestration_support import cli, cli_env

    recipe = small_recipe(tmp_path, corpora, sources=[
        {"name": "wt2", "type": "text", "paths": [str(corpora / "classic" / "wiki.txt")],
         "separator_regex": r"^ = [^=].* = $"}])
    env = {k: v for k, v in cli_env().items() if not k.startswith("DASK_")}
    env["PREFECT_LOGGING_LEVEL"] = "INFO"  # what a user sees by default
    proc = subprocess.run(cli("run", str(recipe), "--output", str(tmp_path / "out"), "--dask", "local:2"), env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    for noise in ("CommClosedError", "Traceback", "| distributed.", "still alive", "Port 8787"):
        assert noise not in proc.stderr, proc.stderr
