// Virtualised tree table for ms-notebook (anywidget ES module, self-contained, no imports).
// Renders the rows Python computed (see ms_notebook/widgets/tree.py for the contract) and sends intents back.
// Only the rows inside the viewport (plus a small overscan) exist in the DOM, so 10,000 rows scroll smoothly.

const ROW_H = 24;
const OVERSCAN = 8;
const WIDTH = { text: "minmax(70px, 130px)", number: "minmax(56px, 80px)", check: "56px" };
const NAME_MIN = "7em"; // the name column takes what the others leave, down to this
const GAP_PX = 6; // column-gap in tree.css

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function render({ model, el: host }) {
  const t0 = performance.now();
  const root = el("div", "ms-tree");
  const toolbar = el("div", "ms-tree-toolbar");
  const input = el("input", "ms-tree-filter");
  input.type = "search";
  input.spellcheck = false;
  const summary = el("span", "ms-tree-summary");
  toolbar.append(input, summary);
  const error = el("div", "ms-tree-error");
  const table = el("div", "ms-tree-table"); // scrolls sideways only when even the narrowest layout is too wide
  table.classList.add("ms-scroll-x");
  const header = el("div", "ms-tree-header");
  const scroll = el("div", "ms-tree-scroll");
  scroll.tabIndex = 0;
  scroll.setAttribute("role", "tree");
  const spacer = el("div", "ms-tree-spacer");
  scroll.append(spacer);
  table.append(header, scroll);
  root.append(toolbar, error, table);
  host.append(root);

  let rows = [];
  let columns = [];
  let index = new Map();
  let selected = model.get("selected");
  let gridTemplate = "";

  const send = (msg) => model.send(msg);

  // Text widths in the fonts the cells use (header: UI font, bold; cells: code font), measured on a canvas.
  const canvas = document.createElement("canvas").getContext("2d");
  function textWidth(text, font) {
    canvas.font = font;
    return canvas.measureText(text).width;
  }
  function fontOf(parentCls) {
    const parent = el("div", parentCls);
    const probe = el("div", "ms-tree-cell", "x");
    parent.style.cssText = "position:absolute;visibility:hidden;height:auto";
    parent.append(probe);
    root.append(parent);
    const style = getComputedStyle(probe);
    const font = `${style.fontStyle} ${style.fontWeight} ${style.fontSize} ${style.fontFamily}`;
    const known = root.isConnected && style.fontSize;
    parent.remove();
    return known ? font : "";
  }

  function setupColumns() {
    columns = model.get("columns") || [];
    // each column exactly as wide as its longest text (Python sends it as `sample`), so nothing is cut
    const headFont = fontOf("ms-tree-header");
    const cellFont = fontOf("ms-tree-row");
    const widthOf = (c) => {
      if (!headFont || !cellFont) return c.sample ? `${c.sample.length + 1}ch` : WIDTH[c.kind] || WIDTH.text;
      const label = textWidth(c.label, headFont);
      const sample = c.kind === "check" ? 18 : textWidth(c.sample || "", cellFont);
      return `${Math.ceil(Math.max(label, sample)) + 4}px`;
    };
    const widths = columns.map(widthOf);
    gridTemplate = [`minmax(${NAME_MIN}, 1fr)`, ...widths].join(" ");
    const minWidth = `calc(${NAME_MIN} + ${widths.join(" + ")} + ${columns.length * GAP_PX + 12}px)`;
    header.style.minWidth = minWidth;
    scroll.style.minWidth = minWidth;
    header.replaceChildren();
    header.style.gridTemplateColumns = gridTemplate;
    header.append(el("div", "ms-tree-cell", "Name"));
    for (const c of columns) {
      const cell = el("div", `ms-tree-cell ms-${c.kind}`, c.label);
      cell.title = c.label;
      header.append(cell);
    }
  }

  function setupRows() {
    rows = model.get("rows") || [];
    index = new Map(rows.map((r, i) => [r.id, i]));
    spacer.style.height = `${rows.length * ROW_H}px`;
    fitHeight();
    draw();
  }

  // the scrolling area grows with the rows up to `height`, so a small tree leaves no empty box
  function fitHeight() {
    const h = Math.min(model.get("height"), Math.max(rows.length, 6) * ROW_H + 2);
    scroll.style.height = `${h}px`;
  }

  function rowElement(r, i) {
    const div = el("div", "ms-tree-row");
    div.style.top = `${i * ROW_H}px`;
    div.style.gridTemplateColumns = gridTemplate;
    div.dataset.id = r.id;
    div.setAttribute("role", "treeitem");
    if (r.has_children) {
      div.classList.add("ms-inner");
      div.setAttribute("aria-expanded", String(!!r.expanded));
    }
    if (r.status) div.classList.add(`ms-status-${r.status}`);
    if (r.id === selected) div.classList.add("ms-selected");
    const name = el("div", "ms-tree-name");
    name.style.paddingLeft = `${r.depth * 14}px`;
    const twisty = el("span", "ms-tree-twisty", r.has_children ? (r.expanded ? "▾" : "▸") : "");
    if (r.has_children) {
      twisty.addEventListener("click", (ev) => {
        ev.stopPropagation();
        send({ type: "expand", id: r.id, expanded: !r.expanded });
      });
    }
    const label = el("span", "ms-tree-label", r.label);
    label.title = r.id;
    name.append(twisty, label);
    div.append(name);
    for (const c of columns) {
      const cell = el("div", `ms-tree-cell ms-${c.kind}`);
      if (c.kind === "check") {
        const box = el("input");
        box.type = "checkbox";
        const v = r.checks ? r.checks[c.key] : false;
        box.checked = v === true;
        box.indeterminate = v === "mixed";
        box.title = `${c.label}: ${r.id}`;
        box.addEventListener("click", (ev) => {
          ev.stopPropagation();
          ev.preventDefault();
          send({ type: "check", column: c.key, id: r.id });
        });
        cell.append(box);
      } else {
        const v = r.values ? r.values[c.key] : "";
        cell.textContent = v === undefined || v === null ? "" : String(v);
      }
      div.append(cell);
    }
    // a click on a block selects it and opens (or closes) it: no need to aim at the small twisty
    div.addEventListener("click", () => {
      choose(r.id);
      if (r.has_children) send({ type: "expand", id: r.id, expanded: !r.expanded });
    });
    return div;
  }

  function draw() {
    const top = scroll.scrollTop;
    const h = scroll.clientHeight || model.get("height");
    const first = Math.max(0, Math.floor(top / ROW_H) - OVERSCAN);
    const last = Math.min(rows.length, Math.ceil((top + h) / ROW_H) + OVERSCAN);
    const frag = document.createDocumentFragment();
    for (let i = first; i < last; i++) frag.append(rowElement(rows[i], i));
    spacer.replaceChildren(frag);
    if (!rows.length) spacer.append(el("div", "ms-tree-empty", "No tensors match."));
  }

  function ensureVisible(i) {
    const top = i * ROW_H;
    if (top < scroll.scrollTop) scroll.scrollTop = top;
    else if (top + ROW_H > scroll.scrollTop + scroll.clientHeight) scroll.scrollTop = top + ROW_H - scroll.clientHeight;
  }

  function choose(id) {
    selected = id; // optimistic highlight; Python confirms through `selected`
    const i = index.get(id);
    if (i !== undefined) ensureVisible(i);
    draw();
    send({ type: "select", id });
  }

  scroll.addEventListener("scroll", () => requestAnimationFrame(draw));
  scroll.addEventListener("keydown", (ev) => {
    const i = index.has(selected) ? index.get(selected) : -1;
    const r = rows[i];
    let handled = true;
    if (ev.key === "ArrowDown") {
      if (i + 1 < rows.length) choose(rows[i + 1].id);
    } else if (ev.key === "ArrowUp") {
      if (i > 0) choose(rows[i - 1].id);
      else if (i < 0 && rows.length) choose(rows[0].id);
    } else if (ev.key === "ArrowRight" && r) {
      if (r.has_children && !r.expanded) send({ type: "expand", id: r.id, expanded: true });
      else if (r.has_children && i + 1 < rows.length) choose(rows[i + 1].id);
    } else if (ev.key === "ArrowLeft" && r) {
      if (r.has_children && r.expanded) send({ type: "expand", id: r.id, expanded: false });
      else {
        for (let j = i - 1; j >= 0; j--) {
          if (rows[j].depth < r.depth) {
            choose(rows[j].id);
            break;
          }
        }
      }
    } else if (ev.key === "Enter" && r) {
      if (r.has_children) send({ type: "expand", id: r.id, expanded: !r.expanded });
      else send({ type: "select", id: r.id });
    } else if (ev.key === " " && r) {
      const c = columns.find((col) => col.kind === "check");
      if (c) send({ type: "check", column: c.key, id: r.id });
    } else handled = false;
    if (handled) ev.preventDefault();
  });

  let timer = null;
  input.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(() => send({ type: "filter", text: input.value }), 200);
  });
  input.addEventListener("keydown", (ev) => {
    if (ev.key === "ArrowDown") {
      ev.preventDefault();
      scroll.focus();
      if (rows.length && !index.has(selected)) choose(rows[0].id);
    }
  });

  function syncMeta() {
    input.placeholder = model.get("placeholder");
    if (document.activeElement !== input) input.value = model.get("filter_text");
    const err = model.get("filter_error");
    error.textContent = err;
    error.style.display = err ? "" : "none";
    input.classList.toggle("ms-error", !!err);
    summary.textContent = model.get("summary");
    fitHeight();
  }

  model.on("change:columns", () => {
    setupColumns();
    draw();
  });
  model.on("change:rows", setupRows);
  model.on("change:selected", () => {
    selected = model.get("selected");
    draw();
  });
  for (const k of ["filter_text", "filter_error", "summary", "height", "placeholder"]) model.on(`change:${k}`, syncMeta);

  syncMeta();
  setupColumns();
  setupRows();
  if (!root.isConnected) {
    requestAnimationFrame(function attached() {
      if (!root.isConnected) return requestAnimationFrame(attached);
      setupColumns();
      draw();
    });
  }
  requestAnimationFrame(() => {
    const ms = performance.now() - t0;
    root.dataset.renderMs = ms.toFixed(1);
    model.set("render_ms", ms);
    model.save_changes();
  });
  return () => clearTimeout(timer);
}

export default { render };
