"""Object storage: inputs read from and the corpus written to s3:// URLs on a local
S3-compatible server (moto) started on loopback; a second build from an empty staging
folder resumes from what the bucket holds."""
from __future__ import annotations

import socket

import pytest

from orchestration_support import cli, cli_env, small_recipe, snapshot


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def s3(monkeypatch):
    """fsspec's s3 filesystem pointed at a moto server on 127.0.0.1 (this process and workers)."""
    import logging

    import fsspec.config
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    options = {"endpoint_url": endpoint, "key": "testing", "secret": "testing"}
    for k, v in {"FSSPEC_S3_ENDPOINT_URL": endpoint, "FSSPEC_S3_KEY": "testing", "FSSPEC_S3_SECRET": "testing",
                 "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)  # for worker processes
    monkeypatch.setitem(fsspec.config.conf, "s3", options)  # for this one
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    fs = s3fs.S3FileSystem(**options)
    for bucket in ("inputs", "corpora"):  # moto keeps its buckets for the whole process
        fs.makedirs(bucket, exist_ok=True)
    yield fs
    s3fs.S3FileSystem.clear_instance_cache()
    server.stop()


def test_s3_inputs_and_output_with_resume_from_the_bucket(tmp_path, corpora, s3, prefect_api, monkeypatch):
    from flows.corpus import run_corpus
    from flows.storage import NOT_PUSHED

    monkeypatch.setenv("OPENCORPUS_CACHE", str(tmp_path / "cache"))  # where remote inputs are copied
    classic = corpora / "classic"
    s3.put_file(str(classic / "wiki.txt"), "inputs/wiki/wiki.txt")
    s3.put_file(str(classic / "novel.txt"), "inputs/books/novel.txt")
    sources = [
        {"name": "wt2", "type": "text", "paths": ["s3://inputs/wiki/*.txt"], "separator_regex": r"^ = [^=].* = $"},
        {"name": "botchan", "type": "text", "paths": ["s3://inputs/books/novel.txt"], "separator_regex": r"^CHAPTER [IVXL]+"},
    ]
    recipe = small_recipe(tmp_path, corpora, name="s3-small", sources=sources)
    url = "s3://corpora/s3-small"
    first = run_corpus(str(recipe), url, workers=1, cards_dir=None, work_dir=str(tmp_path / "staging1"))
    assert first.stages.ingest.docs_out == 40 + 12  # articles + chapters

    # the bucket holds the whole corpus folder, done records included, and nothing else
    remote = {p.removeprefix("corpora/s3-small/") for p in s3.find(url)}
    local = set(snapshot(tmp_path / "staging1")) | {"manifest.json", "README.md"}
    assert local <= remote
    assert {"manifest.json", "README.md", "tokenizer.json", ".opencorpus/done/dedup/all.json"} <= remote
    assert not any(r.startswith(NOT_PUSHED) or r in NOT_PUSHED for r in remote)
    assert s3.cat_file(f"{url}/tokenizer.json") == (tmp_path / "staging1" / "tokenizer.json").read_bytes()

    # a fresh machine (empty staging): everything is pulled and reused, nothing recomputed
    second = run_corpus(str(recipe), url, workers=1, cards_dir=None, work_dir=str(tmp_path / "staging2"))
    assert all(r.reused == r.units for r in second.resume.values()), second.resume
    assert snapshot(tmp_path / "staging2", normalize=False) == snapshot(tmp_path / "staging1", normalize=False)

    # a source dropped from the recipe: its files leave the bucket too
    recipe = small_recipe(tmp_path, corpora, name="s3-small", sources=sources[:1])
    run_corpus(str(recipe), url, workers=1, cards_dir=None, work_dir=str(tmp_path / "staging2"))
    assert not [p for p in s3.find(url) if "botchan" in p]


def test_an_output_bucket_that_does_not_exist_fails_before_ingest(tmp_path, corpora, s3, prefect_api):
    """The bucket is checked (a probe object written and deleted) before the first stage:
    one line naming the URL and the reason, and nothing ingested into the staging folder."""
    import subprocess

    from flows.corpus import run_corpus
    from flows.state import OutputFolderError

    recipe = small_recipe(tmp_path, corpora, name="no-bucket")
    url, staging = "s3://missing-bucket/x", tmp_path / "staging"
    proc = subprocess.run(cli("run", str(recipe), "--output", url, "--work-dir", str(staging)), env=cli_env(),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and url in lines[0] and "bucket does not exist" in lines[0], proc.stderr
    assert not (staging / "documents").exists()

    # the flow itself checks too (run_corpus, deployments): before pulling or ingesting anything
    with pytest.raises(OutputFolderError, match="missing-bucket/x is not writable"):
        run_corpus(str(recipe), url, workers=1, cards_dir=None, work_dir=str(staging))
    assert not (staging / "documents").exists()

    from flows.storage import OutputLocation

    OutputLocation.of("s3://corpora/probed").check_writable()
    assert not s3.find("corpora/probed")  # a writable bucket keeps no probe object


def _remote_recipe(tmp_path, corpora, s3, monkeypatch, name: str):
    """The small recipe (orchestration_support.small_recipe) with every source read from s3://inputs/."""
    monkeypatch.setenv("OPENCORPUS_CACHE", str(tmp_path / "cache"))
    classic = corpora / "classic"
    s3.put_file(str(classic / "wiki.txt"), "inputs/wiki/wiki.txt")
    s3.put_file(str(classic / "novel.txt"), "inputs/books/novel.txt")
    s3.put_file(str(corpora / "web" / "pages.jsonl.gz"), "inputs/web/pages.jsonl.gz")
    sources = [
        {"name": "wt2", "type": "text", "paths": ["s3://inputs/wiki/*.txt"], "separator_regex": r"^ = [^=].* = $"},
        {"name": "botchan", "type": "text", "paths": ["s3://inputs/books/novel.txt"], "separator_regex": r"^CHAPTER [IVXL]+"},
        {"name": "botchan_copy", "type": "text", "paths": ["s3://inputs/books/novel.txt"], "separator_regex": r"^CHAPTER [IVXL]+"},
        {"name": "cc", "type": "jsonl", "paths": ["s3://inputs/web/pages.jsonl.gz"], "max_docs": 120},
    ]
    return small_recipe(tmp_path, corpora, name=name, sources=sources)


@pytest.mark.slow
def test_dask_workers_with_no_shared_filesystem_write_the_same_bytes(tmp_path, corpora, s3, prefect_api, monkeypatch):
    """An s3:// output built by three Dask workers, each with a scratch folder of its own: no
    worker opens, lists or writes anything in the flow's staging folder (an audit hook in every
    worker process records any access), every stage's units ran on the workers, and the corpus
    in the bucket is byte-identical to a one-thread build of the same recipe into a local folder."""
    from distributed import Client, LocalCluster, get_task_stream

    from flows.corpus import run_corpus
    from orchestration_support import folder_accesses, watch_folder

    recipe = _remote_recipe(tmp_path, corpora, s3, monkeypatch, "nofs")
    url, staging = "s3://corpora/nofs", tmp_path / "staging"
    with LocalCluster(n_workers=3, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        client.run(watch_folder, str(staging))
        with get_task_stream(client) as stream:
            on_dask = run_corpus(str(recipe), url, workers=3, cards_dir=None, dask=cluster.scheduler_address,
                                 work_dir=str(staging))
        accesses = client.run(folder_accesses)
        scratch = client.run(lambda dask_worker: dask_worker.local_directory)
    assert len(set(scratch.values())) == 3  # each worker its own folder
    assert {w: a for w, a in accesses.items() if a} == {}
    keys = [str(t["key"]) for t in stream.data]
    for kind in ("ingest_task-", "clean_task-", "unit_task-"):
        assert any(k.startswith(kind) for k in keys), kind
    assert len({t["worker"] for t in stream.data}) == 3

    one = run_corpus(str(recipe), str(tmp_path / "one"), workers=1, cards_dir=None)
    s3.get(url, str(tmp_path / "bucket"), recursive=True)
    assert snapshot(tmp_path / "bucket") == snapshot(staging) == snapshot(tmp_path / "one")
    assert on_dask.stages.tokenize.docs_out == one.stages.tokenize.docs_out > 0
    assert not any(".opencorpus/scratch" in p for p in s3.find(url))  # scratch state leaves the bucket with the run


@pytest.mark.slow
def test_a_killed_dask_run_on_s3_resumes_on_a_fresh_machine_from_its_units(tmp_path, corpora, s3, prefect_api, monkeypatch):
    """`opencorpus run --output s3://... --dask local:3` killed (whole process group) once dedup
    units have reached the bucket; a rerun from an empty staging folder (another machine) pulls
    them, runs only the units left, and ends byte-identical to an uninterrupted local build."""
    from flows.corpus import run_corpus
    from flows.progress import progress_path, read_events
    from orchestration_support import cli, run_until_killed

    recipe = _remote_recipe(tmp_path, corpora, s3, monkeypatch, "nofs-kill")
    url = "s3://corpora/nofs-kill"
    markers = "corpora/nofs-kill/.opencorpus/scratch/dedup/done/groups"

    def dedup_units_stored() -> bool:
        s3.invalidate_cache()
        return len(s3.find(markers)) >= 2

    cmd = cli("run", str(recipe), "--output", url, "--work-dir", str(tmp_path / "machine1"), "--dask", "local:3",
              "--cards-dir", "")
    run_until_killed(cmd, dedup_units_stored, tmp_path / "kill.log", timeout=600, poll_s=0.2)
    s3.invalidate_cache()
    assert not s3.exists(f"{url}/manifest.json")
    signed = len(s3.find("corpora/nofs-kill/.opencorpus/scratch/dedup/done/sign"))

    final = run_corpus(str(recipe), url, workers=3, cards_dir=None, dask="local:3", work_dir=str(tmp_path / "machine2"))
    reference = run_corpus(str(recipe), str(tmp_path / "ref"), workers=1, cards_dir=None)
    shards = reference.resume["clean"].units
    assert signed == shards >= 5
    assert final.resume["clean"].reused == shards
    events = read_events(progress_path(tmp_path / "machine2"))
    ran = [e for e in events if e["event"] == "units_done" and e["stage"] == "dedup"]
    assert "sign" not in {e["phase"] for e in ran}, ran  # every shard was signed before the kill
    s3.invalidate_cache()
    s3.get(url, str(tmp_path / "bucket"), recursive=True)
    assert snapshot(tmp_path / "bucket") == snapshot(tmp_path / "ref")
    assert not [p for p in s3.find(url) if ".tmp-" in p or ".opencorpus/scratch" in p]
