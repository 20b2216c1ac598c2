/* Search ranking of the book (html_search_scorer in _config.yml): Sphinx's default
 * weights, plus two bonuses so that a question's own chapter comes first:
 * - a chapter outranks the appendix pages (API reference, benchmarks) that mention
 *   the same words;
 * - a page whose title holds the words of the query outranks pages that only have
 *   them in a section title or in the text. */
var Scorer = {
  score: (result) => {
    const [docname, title, anchor, descr, score, filename] = result;
    let bonus = docname.startsWith("chapters/") ? 20 : 0;
    const query = new URLSearchParams(window.location.search).get("q") || "";
    const words = splitQuery(query.toLowerCase()).filter((w) => w.length > 1);
    const pageTitle = String(title || "").split(" > ")[0].toLowerCase();
    if (words.length > 0) {
      const found = words.filter((w) => pageTitle.includes(w)).length;
      bonus += Math.round((10 * found) / words.length);
    }
    return score + bonus;
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
