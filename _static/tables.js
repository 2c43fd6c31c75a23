/* Table cells never read one word per line (the rules are in tables.css).
 *
 * A table in automatic layout shrinks its columns to fit the article, down
 * to each column's longest word, so a cell of a few words can end up with
 * one word on each line. This script lays each table's cells out on one line
 * once, measures their words, and gives every cell a floor: the widest of
 * 8em, its longest word and its narrowest pair of neighbouring words (a
 * line that holds a pair is not one word per line). A cell no wider than
 * its floor stays on one line; a longer one wraps, never narrower than the
 * floor. A table whose floors add up to more than the article scrolls
 * sideways in the theme's .pst-scrollable-table-container.
 *
 * tests/browser_check.py checks the result on every page at 1280 px.
 */
(() => {
  const TABLES = ".bd-article table:not(.highlighttable)";
  const FLOOR_EM = 8;
  const BLOCK = /^(block|list-item|table|flex|grid|flow-root)/;

  // The boxes of a cell's words, its text laid out on one line: a formula
  // is one word, and "`x`," is one word though it spans two elements.
  const wordBoxes = cell => {
    const boxes = [], range = document.createRange(), formulas = new Set();
    let block = null, spaceBefore = true;
    const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
    for (let node; (node = walker.nextNode());) {
      const formula = node.parentElement.closest("mjx-container");
      if (formula) {  // MathJax's hidden copy of the formula: count it once
        if (!formulas.has(formula)) boxes.push(formula.getBoundingClientRect());
        formulas.add(formula);
        spaceBefore = true;
        continue;
      }
      let el = node.parentElement;
      while (el !== cell && !BLOCK.test(getComputedStyle(el).display)) el = el.parentElement;
      if (el !== block) [block, spaceBefore] = [el, true];
      for (const m of node.data.matchAll(/\S+/g)) {
        range.setStart(node, m.index);
        range.setEnd(node, m.index + m[0].length);
        const box = range.getBoundingClientRect();
        const last = boxes[boxes.length - 1];
        if (m.index > 0 || spaceBefore || !last) boxes.push(box);
        else boxes[boxes.length - 1] = DOMRectReadOnly.fromRect({  // the same word, continued
          x: last.left, y: last.top, width: box.right - last.left, height: last.height});
      }
      spaceBefore = /\s$/.test(node.data);
    }
    return boxes.filter(b => b.width > 0);
  };

  // How wide the cell is on one line, and its floor (see above).
  const measureCell = cell => {
    const words = wordBoxes(cell);
    if (!words.length) return null;
    let longest = 0, pair = Infinity;
    words.forEach((w, i) => {
      longest = Math.max(longest, w.width);
      const next = words[i + 1];  // a neighbour on the same line (not the next paragraph)
      if (next && Math.abs(next.top - w.top) < 1) pair = Math.min(pair, next.right - w.left);
    });
    if (pair === Infinity) pair = 0;  // one word
    const em = parseFloat(getComputedStyle(cell).fontSize);
    const full = Math.max(...words.map(w => w.right)) - Math.min(...words.map(w => w.left));
    return {full, floor: Math.max(FLOOR_EM * em, longest, pair)};
  };

  const layOut = table => {
    const shown = table.checkVisibility ? table.checkVisibility()
                                        : table.getClientRects().length > 0;
    if (!shown) return;  // hidden (in a closed <details>): laid out when it opens
    const cells = [...table.rows].flatMap(row => [...row.cells]);
    table.classList.add("cells-measured-on-one-line");
    const sizes = cells.map(measureCell);
    table.classList.remove("cells-measured-on-one-line");
    cells.forEach((cell, i) => {
      const size = sizes[i];
      const oneLine = size !== null && size.full <= size.floor + 1;
      cell.classList.toggle("cell-one-line", oneLine);
      // On the cell's paragraph where there is one: CSS 2.1 (10.4) leaves
      // the effect of min-width on a table cell itself undefined.
      const box = cell.querySelector(":scope > p:only-child") || cell;
      box.style.minWidth = size && !oneLine ? `${Math.ceil(size.floor) + 2}px` : "";
    });
  };

  const layOutAll = (root = document) => root.querySelectorAll(TABLES).forEach(layOut);
  const start = () => {
    layOutAll();
    // Again once fonts are in and MathJax has typeset the formulas.
    document.fonts?.ready.then(() => layOutAll());
    window.addEventListener("load", () => {
      window.MathJax?.startup?.promise?.then(() => layOutAll());
    });
    // A table in a <details> that opens ("toggle" does not bubble: capture it).
    document.addEventListener("toggle", event => layOutAll(event.target), true);
  };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
