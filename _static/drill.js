/* The mock-interview drill (appendix/drill, written by _ext/takeaways.py).
 *
 * Every question is already in the page as a hidden card (.drill-card, with the class
 * drill-part-N of its part). This script deals one at random from the chosen set,
 * shows its wording in the chosen language, counts 30 seconds down, and reveals the
 * answers and follow-ups on request. Questions marked "shaky" are kept in this
 * browser's localStorage, nowhere else. No network, no library.
 */
(() => {
  "use strict";
  const SECONDS = 30;
  const STORE = "qkv-drill-shaky";

  const loadShaky = () => {
    try {
      const ids = JSON.parse(localStorage.getItem(STORE) || "[]");
      return new Set(Array.isArray(ids) ? ids : []);
    } catch (err) {
      return new Set();
    }
  };
  const saveShaky = (ids) => {
    try {
      localStorage.setItem(STORE, JSON.stringify([...ids].sort()));
    } catch (err) {
      /* storage disabled: the marks last until the page is closed */
    }
  };

  const start = () => {
    const app = document.getElementById("drill-app");
    if (!app) return;
    const $ = (id) => document.getElementById(id);
    const cards = [...document.querySelectorAll(".drill-card")];
    const part = $("drill-part");
    const lang = $("drill-lang");
    const stage = $("drill-stage");
    const timer = $("drill-timer");
    const status = $("drill-status");
    const shakyBox = $("drill-shaky");
    let shaky = loadShaky();
    let current = null;
    let ticking = null;
    let last = null;

    const setLanguage = () => {
      document.body.classList.toggle("drill-lang-zh", lang.value === "zh");
      document.body.classList.toggle("drill-lang-en", lang.value !== "zh");
    };
    const stopTimer = () => {
      if (ticking !== null) clearInterval(ticking);
      ticking = null;
    };
    const pool = () => {
      if (part.value === "shaky") return cards.filter((c) => shaky.has(c.id));
      if (part.value === "all") return cards;
      return cards.filter((c) => c.classList.contains("drill-" + part.value));
    };

    const deal = () => {
      stopTimer();
      const choices = pool();
      if (current) current.classList.remove("drill-current", "drill-revealed");
      if (choices.length === 0) {
        current = null;
        stage.hidden = true;
        status.textContent =
          part.value === "shaky"
            ? "No question is marked shaky on this device yet. Mark one after answering it."
            : "No question in this set.";
        return;
      }
      // a different question from the last one, when there is a choice
      const others = choices.length > 1 ? choices.filter((c) => c !== last) : choices;
      current = others[Math.floor(Math.random() * others.length)];
      last = current;
      current.classList.add("drill-current");
      // the timer and buttons go right under the question, above the answers
      current.querySelector(".drill-answers").before(stage);
      shakyBox.checked = shaky.has(current.id);
      status.textContent = `${choices.length} question${choices.length === 1 ? "" : "s"} in this set. Answer aloud.`;
      stage.hidden = false;
      let left = SECONDS;
      timer.textContent = String(left);
      timer.classList.remove("drill-time-up");
      ticking = setInterval(() => {
        left -= 1;
        timer.textContent = String(Math.max(left, 0));
        if (left <= 0) {
          stopTimer();
          timer.classList.add("drill-time-up");
          status.textContent = "Time is up. Reveal the answers and compare.";
        }
      }, 1000);
      current.scrollIntoView({ block: "nearest" });
    };

    const reveal = () => {
      if (!current) return;
      stopTimer();
      current.classList.add("drill-revealed");
    };

    $("drill-deal").addEventListener("click", deal);
    $("drill-reveal").addEventListener("click", reveal);
    lang.addEventListener("change", setLanguage);
    shakyBox.addEventListener("change", () => {
      if (!current) return;
      shaky = loadShaky();
      if (shakyBox.checked) shaky.add(current.id);
      else shaky.delete(current.id);
      saveShaky(shaky);
    });
    setLanguage();
    app.hidden = false;
  };

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
