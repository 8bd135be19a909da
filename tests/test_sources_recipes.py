"""The network recipes for real open corpora validate offline (they are run with network only)."""
from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.recipe import load_recipe

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


@pytest.mark.parametrize("name, type_", [("fineweb_edu", "hf"), ("wikitext103", "hf"), ("tinystories", "hf"),
                                         ("commoncrawl_wet", "commoncrawl")])
def test_network_recipe_validates(name, type_, tmp_path):
    path = RECIPES / f"{name}.yaml"
    text = path.read_text()
    assert "License" in text and "NEEDS NETWORK" in text  # documented in the header comment
    recipe = load_recipe(path)
    src = recipe.sources[0]
    assert src.type == type_ and src.license
    assert recipe.source_objects(tmp_path / "unused")[0].config is src
