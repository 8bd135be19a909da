"""Schedules: `opencorpus deploy RECIPE --cron ...` registers a deployment with its cron
schedule on the (session's temporary, real) Prefect server and serves it; a run triggered
through the API is picked up by the served process and completes."""
from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from orchestration_support import cli, cli_env, small_recipe

pytestmark = pytest.mark.slow


def test_deploy_registers_the_schedule_and_serves_triggered_runs(tmp_path, corpora, prefect_api):
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound

    wt2 = corpora / "classic" / "wiki.txt"
    recipe = small_recipe(tmp_path, corpora, name="nightly-small", sources=[
        {"name": "wt2", "type": "text", "license": "CC-BY-SA-3.0", "paths": [str(wt2)], "separator_regex": r"^ = [^=].* = $"}])
    out = tmp_path / "out"
    env = cli_env() | {"PREFECT_RUNNER_POLL_FREQUENCY": "1"}
    log = tmp_path / "serve.log"
    with open(log, "w") as err:
        proc = subprocess.Popen(cli("deploy", str(recipe), "--cron", "0 3 * * *", "--name", "nightly", "--output", str(out),
                                    "--workers", "1", "--cards-dir", ""), env=env, stdout=err, stderr=err,
                                start_new_session=True)
    try:
        with get_client(sync_client=True) as client:
            deadline = time.monotonic() + 120
            while True:
                try:
                    deployment = client.read_deployment_by_name("corpus/nightly")
                    break
                except ObjectNotFound:
                    assert proc.poll() is None, log.read_text()[-3000:]
                    assert time.monotonic() < deadline, "deployment never registered"
                    time.sleep(0.5)
            assert [s.schedule.cron for s in deployment.schedules] == ["0 3 * * *"]
            assert deployment.schedules[0].active
            assert deployment.parameters["recipe_path"] == str(recipe.resolve())
            assert deployment.parameters["output"] == str(out.resolve())

            flow_run = run_deployment("corpus/nightly", timeout=300, poll_interval=1, as_subflow=False)
            assert flow_run.state.is_completed(), (flow_run.state, log.read_text()[-3000:])
            assert flow_run.deployment_id == deployment.id
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert (out / "manifest.json").is_file() and (out / "README.md").is_file()
