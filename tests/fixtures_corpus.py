"""A small generated corpus tree for the default test suite: no file from ../shared.

`build_corpora(root)` writes, from a fixed seed (same bytes on every machine):

  classic/wiki.txt            WikiText-style articles (" = Title = " lines, " = = Section = = ")
  classic/wiki_other_edition.txt   the same articles with <unk> masking and CSV quoting (near duplicates)
  classic/novel.txt           a novel in "CHAPTER I".."CHAPTER XII" chapters
  classic/play.txt            a play: "SPEAKER:" then lines, speeches separated by blank lines
  classic/stories.txt         short stories separated by blank lines
  web/pages.jsonl.gz          Dolma-style web pages {id, text, source, added, metadata.url}: PAGES
  web/small.jsonl.gz          the first 10 of them
  web/crawl.warc.gz           a crawl: warcinfo, then request/response/metadata per page (CRAWL_PAGES)
  web/article.warc.gz         one long Spanish article captured as WARC ...
  web/article.warc.wet.gz     ... as WET (the text, "spa") ...
  web/article.warc.wat.gz     ... and as WAT (one metadata record)
  web/wget-1.warc.gz, -2      wget-style WARC/1.0 (<uri> in angle brackets, 2 resource records each)
  multilingual/sentences/LANG.txt   generated sentences, one a line (fixtures_text.LANGS)
  multilingual/poems.json     Chinese-style poems {title, author, paragraphs}
  blocklists/en.txt           made-up "bad words" (BAD_WORDS)
"""
from __future__ import annotations

import gzip
import io
import json
import random
import zlib
from pathlib import Path

from fixtures_text import LANGS, article, chinese_poems, paragraph, sentence, sentences, wiki_paragraph

SEED = 20261203
N_PAGES = 60
ARTICLE_URL = "https://es.example.org/wiki/Escopeta"
# (url, language, charset) of the crawl's HTML pages, in record order.
CRAWL_PAGES = ([(f"http://zh{i}.example.cn/news/{i}.html", "zh", "utf-8") for i in range(6)]
               + [("http://shop.example.ru/company/", "ru", "windows-1251"), ("http://blog.example.ru/post/7", "ru", "utf-8")]
               + [(f"https://www.example.com/articles/{i}", lang, "utf-8") for i, lang in enumerate(["en", "en", "de", "fr"])])
WGET_PAGES = (5, 4)
BAD_WORDS = ["zorblax", "quibbert", "flonkish", "grimbletoad"]
ROMAN = ["I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX", "X", "XI", "XII"]
SPEAKERS = ["FIRST CITIZEN", "MENENIUS", "CORIOLANUS", "VOLUMNIA", "BRUTUS", "SICINIUS", "COMINIUS", "VALERIA"]


def wiki_text(n_articles: int = 40, seed: int = SEED) -> str:
    """WikiText-2's layout: a blank line, " = Title = ", blank, paragraphs with " \\n \\n " between."""
    rng = random.Random(f"wiki-{seed}")
    out = [" \n"]
    for a in range(n_articles):
        title = f"{rng.choice(['River', 'Harbour', 'Village', 'Station', 'Library', 'Garden'])} of {a + 1} Lanes"
        out.append(f" = {title} = \n \n")
        for s in range(rng.randint(1, 3)):
            if s:
                out.append(f" = = Section {s} = = \n \n")
            for _ in range(rng.randint(3, 5)):
                out.append(f" {wiki_paragraph(rng, rng.randint(3, 6))} \n \n")
    return "".join(out)


def other_edition(wiki: str, mask: float = 0.05, seed: int = SEED) -> str:
    """The same articles as another edition would print them: some words masked as <unk>,
    every line CSV-quoted (blank lines become '""'). Article pairs keep a word 5-gram
    Jaccard around 0.6."""
    rng = random.Random(f"edition-{seed}")
    out = []
    for line in wiki.split("\n"):
        if not line.startswith(" = "):  # titles and section headings stay as they are
            line = " ".join("<unk>" if w and rng.random() < mask else w for w in line.split(" "))
        out.append('"' + line.replace('"', '""') + '"')
    return "\n".join(out)


def novel_text(seed: int = SEED) -> str:
    rng = random.Random(f"novel-{seed}")
    chapters = []
    for r in ROMAN:
        chapters.append(f"CHAPTER {r}\n\n" + "\n\n".join(article(rng, 600)) + "\n")
    return "\n\n".join(chapters)


def play_text(n_chars: int = 220_000, seed: int = SEED) -> str:
    rng = random.Random(f"play-{seed}")
    speeches, size = [], 0
    while size < n_chars:
        lines = [sentence(rng, "en") for _ in range(rng.randint(1, 6))]
        s = f"{rng.choice(SPEAKERS)}:\n" + "\n".join(lines)
        speeches.append(s)
        size += len(s) + 2
    return "\n\n".join(speeches) + "\n"


def stories_text(n: int = 12, seed: int = SEED) -> str:
    rng = random.Random(f"stories-{seed}")
    return "\n\n".join(paragraph(rng, "en", rng.randint(3, 6)) for _ in range(n)) + "\n"


def web_pages(n: int = N_PAGES, seed: int = SEED) -> list[dict]:
    """Dolma-style records: mostly English pages of 60-900 words, every 7th in another language."""
    rng = random.Random(f"web-{seed}")
    others = ["de", "fr", "es", "ru", "nl", "it"]
    pages = []
    for i in range(n):
        lang = others[(i // 7) % len(others)] if i % 7 == 6 else "en"
        words = rng.choice([60, 150, 300, 450, 900])
        text = "\n\n".join(article(rng, words, lang))
        if i % 10 == 3:  # something for the PII rules
            text += f"\n\nWrite to editor{i}@example.org or visit 192.168.{i}.17 for the archive."
        pages.append({"id": f"page-{i:04d}", "text": text, "source": "generated-web", "added": "2026-01-01T00:00:00Z",
                      "metadata": {"url": f"https://site{i % 13}.example.org/{i}/index.html", "language": lang}})
    return pages


def _html(rng: random.Random, title: str, paras: list[str], lang: str, charset: str | None = None) -> str:
    meta = f'<meta charset="{charset}">' if charset else ""
    body = "\n".join(f"<p>{p}</p>" for p in paras)
    return (f'<!DOCTYPE html>\n<html lang="{lang}"><head>{meta}<title>{title}</title>'
            f"<script>var tracker = {rng.randint(1, 10**6)}; function go() {{ return tracker; }}</script></head>\n"
            f'<body><div class="nav"><a href="/">Home</a> | <a href="/about">About</a> | <a href="/contact">Contact</a></div>\n'
            f"<article><h1>{title}</h1>\n{body}\n</article>\n"
            f'<div class="footer"><p>Copyright 2020 Example. All rights reserved.</p><ul><li>Privacy</li><li>Terms</li>'
            f"<li>Cookies</li><li>Sitemap</li></ul></div></body></html>\n")


class _Warc:
    """warcio's writer with fixed record ids and dates (warcio makes random ones otherwise)."""

    def __init__(self, path: Path, date: str, version: str = "1.1"):
        from warcio.warcwriter import WARCWriter

        self.f = open(path, "wb")
        self.w = WARCWriter(self.f, gzip=True, warc_version=version)
        self.date, self.n, self.name = date, 0, path.name

    def _headers(self, extra: dict | None = None) -> dict:
        self.n += 1
        return {"WARC-Record-ID": f"<urn:uuid:{zlib.crc32(self.name.encode()):08x}-0000-4000-8000-{self.n:012d}>",
                "WARC-Date": self.date, **(extra or {})}

    def record(self, uri: str, kind: str, payload: bytes, content_type: str = "", extra: dict | None = None):
        headers = self._headers(extra)
        rec = self.w.create_warc_record(uri, kind, payload=io.BytesIO(payload), length=len(payload),
                                        warc_content_type=content_type, warc_headers_dict=headers)
        self.w.write_record(rec)

    def warcinfo(self, fields: str):
        self.record("", "warcinfo", fields.encode(), "application/warc-fields")

    def capture(self, url: str, body: bytes, content_type: str, status: str = "200 OK", metadata: bool = True):
        host = url.split("/")[2].strip("<>")
        self.record(url, "request", f"GET / HTTP/1.1\r\nHost: {host}\r\nUser-Agent: test\r\n\r\n".encode(),
                    "application/http; msgtype=request")
        http = f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        self.record(url, "response", http + body, "application/http; msgtype=response")
        if metadata:
            self.record(url, "metadata", b"fetchTimeMs: 120\r\n", "application/warc-fields")

    def close(self):
        self.f.close()


def write_crawl(path: Path, seed: int = SEED) -> list[str]:
    """CRAWL_PAGES as a Common Crawl-like WARC; returns each page's main paragraphs' text."""
    rng = random.Random(f"crawl-{seed}")
    w = _Warc(path, "2020-08-08T16:54:17Z")
    w.warcinfo("software: opencorpus-tests\r\nformat: WARC File Format 1.1\r\n")
    texts = []
    for url, lang, charset in CRAWL_PAGES:
        paras = article(rng, 200, lang)
        texts.append("\n".join(paras))
        html = _html(rng, paras[0][:30], paras, lang, None if charset == "windows-1251" else charset)
        w.capture(url, html.encode(charset), f"text/html; charset={charset}")
    w.close()
    return texts


def write_article(folder: Path, seed: int = SEED) -> str:
    """One long Spanish article as WARC, WET and WAT (like Common Crawl's whirlwind sample)."""
    rng = random.Random(f"article-{seed}")
    paras = article(rng, 900, "es")
    text = "Escopeta\n" + "\n".join(paras)
    date = "2024-05-18T01:58:10Z"
    w = _Warc(folder / "article.warc.gz", date)
    w.warcinfo("software: opencorpus-tests\r\n")
    w.capture(ARTICLE_URL, _html(rng, "Escopeta", paras, "es", "utf-8").encode(), "text/html; charset=UTF-8")
    w.close()
    w = _Warc(folder / "article.warc.wet.gz", date)
    w.warcinfo("software: opencorpus-tests\r\n")
    w.record(ARTICLE_URL, "conversion", text.encode(), "text/plain",
             {"WARC-Identified-Content-Language": "spa", "WARC-Refers-To": "<urn:uuid:00000000-0000-4000-8000-000000000003>"})
    w.close()
    w = _Warc(folder / "article.warc.wat.gz", date)
    w.warcinfo("software: opencorpus-tests\r\n")
    w.record(ARTICLE_URL, "metadata", json.dumps({"Envelope": {"WARC-Header-Metadata": {"WARC-Target-URI": ARTICLE_URL}}}).encode(),
             "application/json")
    w.close()
    return text


def write_wget(path: Path, n_pages: int, seed: int) -> None:
    """wget --warc-file style: WARC/1.0, <uri> in angle brackets, resource records for its manifest and log."""
    rng = random.Random(f"wget-{seed}")
    w = _Warc(path, "2021-03-01T10:00:00Z", version="1.0")
    w.warcinfo("software: Wget/1.21\r\n")
    for i in range(n_pages):
        url = f"<https://docs.example.net/{seed}/page{i}.html>"
        w.capture(url, _html(rng, f"Page {i}", article(rng, 120), "en", "utf-8").encode(), "text/html; charset=utf-8",
                  metadata=False)
    w.record("<metadata://gnu.org/software/wget/warc/MANIFEST.txt>", "resource", b"manifest\n", "text/plain")
    w.record("<metadata://gnu.org/software/wget/warc/wget.log>", "resource", b"log\n", "text/plain")
    w.close()


def build_corpora(root: Path, seed: int = SEED) -> Path:
    root = Path(root)
    for d in ("classic", "web", "multilingual/sentences", "blocklists"):
        (root / d).mkdir(parents=True, exist_ok=True)
    wiki = wiki_text(seed=seed)
    (root / "classic" / "wiki.txt").write_text(wiki, encoding="utf-8")
    (root / "classic" / "wiki_other_edition.txt").write_text(other_edition(wiki, seed=seed), encoding="utf-8")
    (root / "classic" / "novel.txt").write_text(novel_text(seed), encoding="utf-8")
    (root / "classic" / "play.txt").write_text(play_text(seed=seed), encoding="utf-8")
    (root / "classic" / "stories.txt").write_text(stories_text(seed=seed), encoding="utf-8")
    pages = web_pages(seed=seed)
    lines = [json.dumps(p, ensure_ascii=False) + "\n" for p in pages]
    for name, rows in (("pages.jsonl.gz", lines), ("small.jsonl.gz", lines[:10])):
        (root / "web" / name).write_bytes(gzip.compress("".join(rows).encode(), mtime=0))
    write_crawl(root / "web" / "crawl.warc.gz", seed)
    write_article(root / "web", seed)
    for k, n in enumerate(WGET_PAGES):
        write_wget(root / "web" / f"wget-{k + 1}.warc.gz", n, seed + k)
    for lang in LANGS:
        (root / "multilingual" / "sentences" / f"{lang}.txt").write_text("\n".join(sentences(lang, 1000, seed)) + "\n",
                                                                          encoding="utf-8")
    (root / "multilingual" / "poems.json").write_text(json.dumps(chinese_poems(40, seed), ensure_ascii=False), encoding="utf-8")
    (root / "blocklists" / "en.txt").write_text("\n".join(BAD_WORDS) + "\n", encoding="utf-8")
    return root
