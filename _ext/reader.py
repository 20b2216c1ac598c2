"""How the site reads: bilingual search, numbered exercises, alt text, one thebe config.

A Sphinx extension of the book (``_config.yml`` loads it):

- **Search in English and Chinese.** The search language ``zh`` is replaced by
  :class:`BilingualSearch`: Chinese text is indexed as jieba's words (Sphinx's own
  Chinese support) *and* as every pair of adjacent characters, and the browser splits a
  Chinese query into the same pairs, so "位置编码" finds a page containing 位置编码 whatever
  jieba's dictionary says. English is split and stemmed as before. A short bilingual
  glossary (:data:`GLOSSARY`) indexes each English term under its Chinese name too, and
  the reverse, because the chapters write most technical terms in English even in
  their Chinese text. ``_ext/search_scorer.js`` ranks chapters above the appendix pages.
- **Exercises carry the chapter's number.** sphinx-exercise numbers exercises through
  the whole book (Q14's exercise was "Exercise 13"); here a chapter's exercises are
  renumbered "Exercise 14" (or 14.1, 14.2 when a chapter has several).
- **Alt text.** A figure drawn by a code cell has no alt text in myst-nb, so the HTML
  shows its file path; it gets "Figure: <the section's title>" instead. (A chapter can
  give a better one in the cell's metadata: ``mystnb: {image: {alt: ...}}``.)
- **Heading and box titles.** Under the heading "The 30-second answer", the two boxes
  are shown as "English" and "中文" instead of repeating the heading. The notebooks keep
  their admonition titles, which ``_ext/takeaways.py`` reads.
- **One thebe config per page.** sphinx-thebe 0.3.1 adds its config script on each of
  the two ``env-before-read-docs`` events of a Jupyter Book build, and the second copy
  redeclares a ``const`` (a console error on every page); duplicates are dropped.
"""

from __future__ import annotations

import re
from pathlib import Path

from docutils import nodes
from sphinx.search.zh import SearchChinese

# --- bilingual search --------------------------------------------------------------------

CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_CJK_RUN = re.compile(f"[{CJK}]+")

# English term -> Chinese term: either one found in a text indexes the other as well.
GLOSSARY = {
    "attention": "注意力",
    "self-attention": "自注意力",
    "multi-head attention": "多头注意力",
    "multi-head": "多头",
    "cross-attention": "交叉注意力",
    "positional encoding": "位置编码",
    "position embedding": "位置嵌入",
    "padding mask": "填充掩码",
    "causal mask": "因果掩码",
    "mask": "掩码",
    "warm-up": "预热",
    "warmup": "预热",
    "learning rate": "学习率",
    "kv cache": "KV 缓存",
    "layernorm": "层归一化",
    "layer normalization": "层归一化",
    "batchnorm": "批归一化",
    "residual": "残差",
    "label smoothing": "标签平滑",
    "weight sharing": "权重共享",
    "dropout": "随机失活",
    "encoder": "编码器",
    "decoder": "解码器",
    "embedding": "嵌入",
    "tokenizer": "分词器",
    "long text": "长文本",
    "fine-tuning": "微调",
    "pre-training": "预训练",
    "feed-forward": "前馈",
}
_GLOSSARY_EN = [
    (re.compile(r"(?<![\w-])" + re.escape(en) + r"s?(?![\w-])", re.I), zh)
    for en, zh in GLOSSARY.items()
]
_GLOSSARY_ZH = [(zh, en) for en, zh in GLOSSARY.items()]


def cjk_pairs(run: str) -> list[str]:
    """Every pair of adjacent characters of a run of Chinese characters (the run itself
    when it has one character): what both the index and a query are split into."""
    return [run] if len(run) == 1 else [run[i : i + 2] for i in range(len(run) - 1)]


class _TermSet(set):
    """The Latin words seen so far, as a set that Sphinx's ``SearchChinese`` can extend."""

    def extend(self, terms: list[str]) -> None:
        self.update(terms)


class BilingualSearch(SearchChinese):
    """Sphinx's Chinese search (jieba) plus character pairs and the bilingual glossary."""

    lang = "zh"
    language_name = "Chinese and English"
    # The browser's half: split a query as split() below splits the pages.
    js_splitter_code = r"""
var splitQuery = (query) => {
  const terms = [];
  const cjk = /[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+/gu;
  for (const word of query.split(/[^\p{Letter}\p{Number}_\p{Emoji_Presentation}]+/gu)) {
    if (!word) continue;
    let last = 0;
    for (const run of word.matchAll(cjk)) {
      if (run.index > last) terms.push(word.slice(last, run.index));
      const chars = run[0];
      if (chars.length === 1) terms.push(chars);
      for (let i = 0; i + 2 <= chars.length; i++) terms.push(chars.slice(i, i + 2));
      last = run.index + chars.length;
    }
    if (last < word.length) terms.push(word.slice(last));
  }
  return terms;
};
"""

    def init(self, options: dict[str, str]) -> None:
        super().init(options)
        # Sphinx 7.4 keeps every page's Latin words in one list and looks each stemmed
        # word up in it: quadratic in the book's size, 100 s of a 150 s build. A set
        # gives the same answers.
        self.latin_terms = _TermSet()

    def split(self, input: str) -> list[str]:
        words = super().split(input)  # jieba's words, then the Latin words
        extra = [zh for en, zh in _GLOSSARY_EN if en.search(input)]
        extra += [en for zh, en in _GLOSSARY_ZH if zh in input]
        for text in [input, *extra]:
            for run in _CJK_RUN.findall(text):
                words += cjk_pairs(run)
        for text in extra:
            words += self.latin1_letters.findall(text)
        return words


# --- exercises numbered by their chapter -------------------------------------------------

_CHAPTER = re.compile(r"(?:^|/)q(\d+)_[^/]*$")


def number_exercises_by_chapter(app, env) -> list[str]:
    """After Sphinx numbered the book's exercises, give each chapter's its Q number."""
    for docname, numbers in env.toc_fignumbers.items():
        chapter = _CHAPTER.search(docname)
        exercises = numbers.get("exercise")
        if not chapter or not exercises:
            continue
        q = int(chapter.group(1))
        ids = sorted(exercises, key=lambda i: exercises[i])
        for k, node_id in enumerate(ids, start=1):
            exercises[node_id] = (q,) if len(ids) == 1 else (q, k)
    return []


# --- doctree fixes -----------------------------------------------------------------------

EN_ANSWER, ZH_ANSWER = "The 30-second answer", "30 秒回答（中文）"
SHOWN_AS = {EN_ANSWER: "English", ZH_ANSWER: "中文"}
_PATH_LIKE = re.compile(r"(^|[/\\])[^ ]*\.(png|jpe?g|svg|gif)$|^\.\.?/|/_build/", re.I)


def _section_title(node: nodes.Node) -> str | None:
    while node is not None:
        if isinstance(node, nodes.section) and node.children:
            title = node.next_node(nodes.title)
            if title is not None:
                return title.astext()
        node = node.parent
    return None


def alt_text_is_a_path(alt: str | None) -> bool:
    return bool(alt) and bool(_PATH_LIKE.search(alt.strip()))


def retitle_answer_boxes(app, doctree: nodes.document) -> None:
    """Under the heading "The 30-second answer", title the boxes "English" and "中文"."""
    if not _CHAPTER.search(app.env.docname):
        return
    for box in doctree.findall(nodes.admonition):
        title = box.next_node(nodes.title)
        if title is None or title.astext() not in SHOWN_AS:
            continue
        if _section_title(box) == EN_ANSWER:  # the heading already says it
            title.children = [nodes.Text(SHOWN_AS[title.astext()])]


def describe_figures(app, doctree: nodes.document, docname: str) -> None:
    """A figure without alt text (HTML then shows its file path) or with a path as alt
    text gets "Figure: <its section's title>"."""
    for image in doctree.findall(nodes.image):
        if not image.get("alt") or alt_text_is_a_path(image["alt"]):
            where = _section_title(image)
            image["alt"] = f"Figure: {where}" if where else "Figure"


def drop_duplicate_scripts(app, pagename, templatename, context, doctree) -> None:
    scripts = context.get("script_files")
    if not isinstance(scripts, list):
        return
    seen, kept = set(), []
    for js in scripts:
        filename = getattr(js, "filename", str(js)) or ""  # None and "" both mean inline
        key = (filename, tuple(sorted(getattr(js, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            kept.append(js)
    context["script_files"] = kept


def _resolve_scorer(app, config) -> None:
    """Sphinx opens html_search_scorer relative to the working directory: make it the book's."""
    scorer = config.html_search_scorer
    if scorer and not Path(scorer).is_absolute():
        config.html_search_scorer = str(Path(app.srcdir) / scorer)


def setup(app):
    app.add_search_language(BilingualSearch)
    app.connect("config-inited", _resolve_scorer)
    app.connect("env-get-updated", number_exercises_by_chapter, priority=900)
    app.connect("doctree-read", retitle_answer_boxes)
    app.connect("doctree-resolved", describe_figures)
    app.connect("html-page-context", drop_duplicate_scripts)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
