/* Search ranking of the book (html_search_scorer in _config.yml): Sphinx's default
 * weights, and a bonus for the chapters, so that a question's chapter comes before the
 * appendix pages (API reference, benchmarks) that mention the same words. */
var Scorer = {
  score: (result) => {
    const [docname, title, anchor, descr, score, filename] = result;
    return docname.startsWith("chapters/") ? score + 20 : score;
  },
  objNameMatch: 11,
  objPartialMatch: 6,
  objPrio: { 0: 15, 1: 5, 2: -5 },
  objPrioDefault: 0,
  title: 15,
  partialTitle: 7,
  term: 5,
  partialTerm: 2,
};
