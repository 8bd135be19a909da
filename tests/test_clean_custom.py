"""A user's own clean filter (`clean.custom_filters: [module:function]`): loaded from the
recipe's folder or an installed package, its rejections in rejected/, the funnel and the
card like the built-in filters', and bad filters named in one line."""
from __future__ import annotations

import textwrap

import pyarrow as pa
import pytest
import yaml

from card_corpus import build_corpus, card_recipe
from fixtures_text import sentences
from pipeline.clean import clean_table
from pipeline.clean.custom import CustomFilterError
from pipeline.recipe import RecipeError, load_recipe

FILTERS = textwrap.dedent('''
    import pyarrow.compute as pc


    def no_lottery(table):
        """Drop documents that mention a lottery: one reason for all."""
        return pc.invert(pc.match_substring(table["text"], "lottery", ignore_case=True)), "mentions a lottery"


    def short_ids(batch):
        """Per-row reasons, a NumPy mask."""
        ids = batch.column("id").to_pylist()
        keep = [len(i) > 3 for i in ids]
        return __import__("numpy").array(keep), [f"id {i!r} is shorter than 4 characters" for i in ids]


    def broken(table):
        return [True] * (table.num_rows + 1), "wrong length"
''')

PROSE = " ".join(sentences("en", 12, seed=3))  # passes the built-in chain


def _docs(texts: dict[str, str]) -> pa.Table:
    n = len(texts)
    return pa.table({"id": list(texts), "text": list(texts.values()), "source": ["s"] * n, "license": [None] * n,
                     "kind": ["prose"] * n, "url": [None] * n, "path": [None] * n, "meta": [None] * n})


def _recipe(folder, filters) -> str:
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump({"name": "custom", "sources": [{"name": "s", "type": "jsonl", "paths": ["x.jsonl"]}],
                                    "clean": {"custom_filters": filters}}), encoding="utf-8")
    return str(path)


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "my_filters.py").write_text(FILTERS, encoding="utf-8")
    return tmp_path


def test_custom_filters_reject_with_their_reasons(folder):
    config = load_recipe(_recipe(folder, ["my_filters:no_lottery", {"function": "my_filters:short_ids", "name": "ids"}])).clean
    assert [f.filter_name for f in config.custom_filters] == ["custom.no_lottery", "custom.ids"]
    assert all(len(f.code_sha256) == 64 for f in config.custom_filters)
    docs = _docs({"doc-1": PROSE, "doc-2": PROSE + " Win the LOTTERY today.", "d3": PROSE,
                  "doc-4": "too short"})
    result = clean_table(docs, config)
    assert result.kept.column("id").to_pylist() == ["doc-1"]
    rej = {r["id"]: r for r in result.rejected.to_pylist()}
    assert rej["doc-2"]["filter"] == "custom.no_lottery" and rej["doc-2"]["reason"] == "mentions a lottery"
    assert rej["d3"]["filter"] == "custom.ids" and rej["d3"]["reason"] == "id 'd3' is shorter than 4 characters"
    assert rej["doc-4"]["filter"] != "custom.no_lottery"  # the built-in chain runs first
    stats = result.stats
    assert stats.rejected_by_filter["custom.no_lottery"] == 1 and stats.rejected_by_filter["custom.ids"] == 1
    assert stats.filters["custom.ids"].examples[0].id == "d3"
    assert stats.docs_in == stats.docs_out + stats.docs_rejected
    assert sum(stats.languages.values()) == stats.docs_out


def test_installed_module_and_code_change(folder, tmp_path_factory, monkeypatch):
    site = tmp_path_factory.mktemp("site")  # stands for an installed package: on sys.path, not in the recipe folder
    (site / "site_filters.py").write_text(FILTERS, encoding="utf-8")
    monkeypatch.syspath_prepend(str(site))
    recipe = _recipe(folder, ["site_filters:no_lottery"])
    before = load_recipe(recipe).clean.custom_filters[0].code_sha256
    (site / "site_filters.py").write_text(FILTERS + "\n# edited\n", encoding="utf-8")
    assert load_recipe(recipe).clean.custom_filters[0].code_sha256 != before  # so the clean cache key changes


def test_bad_filters_are_named(folder):
    with pytest.raises(RecipeError, match=r"recipe.yaml: clean.custom_filters\[0\]: no_such_module:f: cannot import "
                                          r"module 'no_such_module'"):
        load_recipe(_recipe(folder, ["no_such_module:f"]))
    with pytest.raises(RecipeError, match=r"recipe.yaml: clean.custom_filters\[0\]: .*my_filters.py: has no function 'nope'"):
        load_recipe(_recipe(folder, ["my_filters:nope"]))
    with pytest.raises(RecipeError, match=r"recipe.yaml: clean.custom_filters\[0\].function: .*expected module:function"):
        load_recipe(_recipe(folder, ["my_filters.no_lottery"]))
    with pytest.raises(RecipeError, match=r"two custom filters named \['custom.no_lottery'\]"):
        load_recipe(_recipe(folder, ["my_filters:no_lottery", "my_filters:no_lottery"]))
    config = load_recipe(_recipe(folder, ["my_filters:broken"])).clean
    with pytest.raises(CustomFilterError, match=r"clean filter my_filters:broken \(.*my_filters.py\): keep mask has shape \(2,\)"):
        clean_table(_docs({"doc-1": PROSE}), config)


def test_custom_filter_rejections_on_the_card(corpora, tmp_path):
    """Counted per filter on the card, like the built-in ones."""
    recipe_dir = tmp_path / "recipes"
    recipe_dir.mkdir()
    (recipe_dir / "my_filters.py").write_text(FILTERS.replace('"lottery"', '"the"'), encoding="utf-8")
    data = card_recipe(corpora, tmp_path, name="custom-card")
    data["clean"] = {"custom_filters": ["my_filters:no_lottery"]}
    manifest = build_corpus(tmp_path / "out", None, data, recipe_dir=recipe_dir)
    n = manifest.stages.clean.rejected_by_filter["custom.no_lottery"]
    assert n > 0
    card = (tmp_path / "out" / "README.md").read_text(encoding="utf-8")
    assert f"| clean | `custom.no_lottery` | {n:,} |" in card
    assert "mentions a lottery" in card  # an example with its reason
