// Code pane with a copy button: shows the `code` trait read-only; copying happens in the browser only.
function render({ model, el }) {
  el.classList.add("ms-code-pane");
  const bar = document.createElement("div");
  bar.className = "ms-code-bar";
  const title = document.createElement("span");
  title.className = "ms-code-title";
  const button = document.createElement("button");
  button.className = "ms-code-copy jp-mod-styled";
  button.textContent = "Copy";
  bar.append(title, button);
  const pre = document.createElement("pre");
  pre.className = "ms-code";
  el.append(bar, pre);

  const update = () => {
    // highlighted by Python (Pygments, inline styles with the editor's theme colours); plain text otherwise
    const highlighted = model.get("code_html");
    if (highlighted) pre.innerHTML = highlighted;
    else pre.textContent = model.get("code");
    title.textContent = model.get("title");
  };
  update();
  model.on("change:code", update);
  model.on("change:code_html", update);
  model.on("change:title", update);

  button.addEventListener("click", async () => {
    const text = model.get("code");
    let ok = false;
    try {
      await navigator.clipboard.writeText(text);
      ok = true;
    } catch (_err) {
      // insecure context (plain http): fall back to a hidden textarea and execCommand
      const area = document.createElement("textarea");
      area.value = text;
      area.style.position = "fixed";
      area.style.opacity = "0";
      document.body.appendChild(area);
      area.select();
      try {
        ok = document.execCommand("copy");
      } catch (_e) {
        ok = false;
      }
      area.remove();
    }
    button.textContent = ok ? "Copied" : "Copy failed: select the text";
    model.send({ type: "copied", ok });
    setTimeout(() => (button.textContent = "Copy"), 1500);
  });
}

export default { render };
