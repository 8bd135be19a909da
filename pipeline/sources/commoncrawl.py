"""`commoncrawl` source: Common Crawl WET (or WARC) files by crawl id, fetched and read as `warc`.

    - name: cc_sample
      type: commoncrawl
      crawl: CC-MAIN-2024-22
      kind: wet            # wet = CC's extracted text; warc = raw HTML, extracted by us
      sample: 2            # files drawn (seeded) from the crawl's wet.paths.gz listing
      # files: [crawl-data/CC-MAIN-2024-22/segments/.../wet/CC-MAIN-...-00000.warc.wet.gz]
      # segments: ["1715971057216.39"]  # restrict the listing (and `sample`) to these segments
      base_url: https://data.commoncrawl.org/   # or a mirror with the same layout

Files named in full (`files:` entries containing a `/`) need no listing. Otherwise the
listing `<base_url>/crawl-data/<crawl>/<kind>.paths.gz` is fetched into raw/ (and
recorded in the manifest like any file), and `files:` names, `segments:` and `sample:`
pick from it. Common Crawl publishes no per-file sha256, so sizes and hashes are recorded,
not verified; for pinned, verified inputs list the URLs with sha256 in an `http`/`warc` source.
"""
from __future__ import annotations

import gzip
import random
from typing import Literal

from pydantic import Field, model_validator

from pipeline.download import FileSpec
from pipeline.sources import register
from pipeline.sources.http import DownloadOptions, FetchingSource, HttpUrl, ReadOptions


class CommonCrawlConfig(DownloadOptions, ReadOptions):
    crawl: str = Field(pattern=r"^CC-MAIN-\d{4}-\d{2}$", description="crawl id, e.g. CC-MAIN-2024-22")
    kind: Literal["wet", "warc"] = Field("wet", description="wet: CC's extracted text; warc: raw captures, HTML extracted by us")
    files: list[str] = Field(default_factory=list, description="file paths as in the listing (or bare file names, looked up in it)")
    segments: list[str] = Field(default_factory=list, description="only files of these segment ids")
    sample: int | None = Field(None, ge=1, description="this many files drawn from the listing (after `segments`)")
    seed: int = Field(0, description="seed for `sample`")
    base_url: HttpUrl = Field("https://data.commoncrawl.org/", description="Common Crawl (or mirror) root URL")

    @model_validator(mode="after")
    def _what(self):
        if not self.files and not self.segments and not self.sample:
            raise ValueError("give `files`, `segments` or `sample`")
        if self.format not in ("auto", "warc"):
            raise ValueError("Common Crawl files are WARC files (format: warc)")
        return self


@register
class CommonCrawlSource(FetchingSource):
    type = "commoncrawl"
    Config = CommonCrawlConfig

    def _url(self, rel: str) -> str:
        return self.config.base_url.rstrip("/") + "/" + rel.lstrip("/")

    def listing(self) -> list[str]:
        """The crawl's `<kind>.paths.gz`: one path per line, relative to the base URL."""
        c: CommonCrawlConfig = self.config
        entry = c.downloader(self.work_dir).fetch(self._url(f"crawl-data/{c.crawl}/{c.kind}.paths.gz"))
        entry = dict(entry, role="listing")
        self.provenance.append(entry)
        with gzip.open(entry["local_path"], "rt", encoding="utf-8") as f:
            return [line.strip() for line in f if line.strip()]

    def file_specs(self) -> list[FileSpec]:
        c: CommonCrawlConfig = self.config
        full = [f for f in c.files if "/" in f]
        names = [f for f in c.files if "/" not in f]
        chosen: list[str] = list(full)
        if names or c.segments or c.sample:
            listing = self.listing()
            if names:
                by_name = {p.rsplit("/", 1)[-1]: p for p in listing}
                missing = [n for n in names if n not in by_name]
                if missing:
                    raise ValueError(f"source {c.name!r}: not in the {c.crawl} {c.kind} listing: {missing}")
                chosen += [by_name[n] for n in names]
            if c.segments or c.sample:
                pool = listing
                if c.segments:
                    wanted = set(c.segments)
                    pool = [p for p in listing if _segment(p) in wanted]
                    if not pool:
                        raise ValueError(f"source {c.name!r}: no {c.kind} file of segments {c.segments} in {c.crawl}")
                if c.sample:
                    if c.sample > len(pool):
                        raise ValueError(f"source {c.name!r}: sample {c.sample} > {len(pool)} files available")
                    picked = sorted(random.Random(c.seed).sample(range(len(pool)), c.sample))
                    pool = [pool[i] for i in picked]
                chosen += pool
        chosen = list(dict.fromkeys(chosen))
        return [FileSpec(self._url(p)) for p in chosen]


def _segment(path: str) -> str | None:
    parts = path.split("/")
    return parts[parts.index("segments") + 1] if "segments" in parts[:-1] else None
