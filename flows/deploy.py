"""Scheduled corpus builds: serve the corpus flow as a Prefect deployment with a cron schedule.

    opencorpus deploy recipes/default.yaml --cron "0 3 * * *"

registers deployment `corpus/<recipe name>` with the schedule on the configured Prefect
API (`make serve` starts a local server and UI; set PREFECT_API_URL to use it) and keeps
serving it: each scheduled or manually triggered run executes in a subprocess of this
command. Runs resume like `opencorpus run` does, so a scheduled rebuild of an unchanged
recipe reuses every unit and only a changed source, config or code reruns work.
"""
from __future__ import annotations

from pathlib import Path

from pipeline.recipe import load_recipe


def deployment_parameters(recipe_path: str, output: str | None, workers: int, cards_dir: str | None,
                          dask: str | None, work_dir: str | None) -> dict:
    """Flow parameters with local paths made absolute: a served run must not depend on its cwd."""

    def absolute(p: str | None) -> str | None:
        return str(Path(p).resolve()) if p and "://" not in p else p

    recipe = load_recipe(recipe_path)
    return {
        "recipe_path": absolute(recipe_path),
        "output": absolute(output) or str(Path("data", recipe.name).resolve()),
        "workers": workers,
        "cards_dir": absolute(cards_dir),
        "dask": dask,
        "work_dir": absolute(work_dir),
    }


def serve_recipe(recipe_path: str, cron: str, name: str | None = None, output: str | None = None, workers: int = 2,
                 cards_dir: str | None = "data_cards", dask: str | None = None, work_dir: str | None = None,
                 timezone: str | None = None, limit: int | None = 1) -> None:
    """Register the recipe's deployment with its cron schedule and serve it until interrupted.

    `limit`: runs of this deployment at the same time (default 1: two builds of one
    output folder must not interleave)."""
    from prefect.schedules import Cron

    from flows.corpus import corpus_flow
    from flows.server import prefect_api

    recipe = load_recipe(recipe_path)
    params = deployment_parameters(recipe_path, output, workers, cards_dir, dask, work_dir)
    schedule = Cron(cron, timezone=timezone) if timezone else Cron(cron)
    with prefect_api():
        corpus_flow.serve(
            name=name or recipe.name,
            schedules=[schedule],
            parameters=params,
            description=f"Build corpus {recipe.name} from {params['recipe_path']} into {params['output']}",
            tags=["opencorpus", recipe.name],
            limit=limit,
        )
