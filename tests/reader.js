// What a reader sees on one page of the book, collected inside the browser.
// Run by tests/reader.py with Selenium's execute_async_script: the last argument
// is the callback that hands the report back to Python.
const reportBack = arguments[arguments.length - 1];

// Prose where raw LaTeX must not be left: everything but code, scripts and typeset math.
const NOT_PROSE = "script, style, pre, code, textarea, svg, mjx-container, .MathJax";
const RAW_LATEX = [
  /\\[A-Za-z]{2,}/,           // a command: \frac, \mathbb, \sum
  /\\[()[\]]/,                // a math delimiter: \( \) \[ \]
  /\$\$|\$[^\s$\d.,;:)]/,     // $$ or an unmatched $ before math: $x, $\frac
  /[_^]\{/,                   // a sub- or superscript group: x_{t}, e^{-x}
];

function withTimeout(promise, ms, what) {
  const late = new Promise((_, reject) => setTimeout(() => reject(new Error(what)), ms));
  return Promise.race([promise, late]);
}

async function mathReport() {
  const math = Array.from(document.querySelectorAll(".math"));
  const report = { count: math.length, errors: [], untypeset: [] };
  if (!math.length) return report;
  if (!(window.MathJax && MathJax.startup && MathJax.startup.promise)) {
    report.errors.push("MathJax did not load, so no formula is typeset");
    return report;
  }
  try {
    await withTimeout(MathJax.startup.promise, 20000, "MathJax did not finish in 20 s");
  } catch (e) {
    report.errors.push(String(e));
  }
  // A TeX error typesets as <merror>; an undefined macro, by default, as red text.
  for (const item of MathJax.startup.document.math || []) {
    const mml = MathJax.startup.toMML(item.root);
    const error = mml.match(/<merror[^>]*data-mjx-error="([^"]*)"/);
    const macro = mml.match(/<mtext mathcolor="red">(\\[^<]*)<\/mtext>/);
    if (error) report.errors.push(`${error[1]} in ${item.math.trim()}`);
    if (macro) report.errors.push(`undefined macro ${macro[1]} in ${item.math.trim()}`);
  }
  for (const el of math) {
    if (!el.querySelector("mjx-container")) report.untypeset.push(el.textContent.slice(0, 80));
  }
  return report;
}

function rawLatex() {
  const root = document.querySelector("main") || document.body;
  if (!root) return ["the page has no body"];
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  const found = [];
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    if (node.parentElement.closest(NOT_PROSE)) continue;
    const text = node.textContent;
    for (const pattern of RAW_LATEX) {
      const m = text.match(pattern);
      if (m) {
        const at = Math.max(0, m.index - 30);
        found.push(text.slice(at, m.index + 40).replace(/\s+/g, " ").trim());
        break;
      }
    }
  }
  return found;
}

async function loads(img) {
  if (!img.complete) {
    try { await withTimeout(img.decode(), 10000, "timeout"); } catch (e) { /* judged below */ }
  }
  return img.complete && img.naturalWidth > 0;
}

async function imageReport() {
  const images = [];
  for (const img of document.images) {
    if (img.id.startsWith("_anim_img")) continue;  // an animation's player, judged below
    images.push({
      src: img.getAttribute("src").slice(0, 120), ok: await loads(img),
      natural: img.naturalWidth, shown: img.getBoundingClientRect().width,
    });
  }
  return images;
}

async function animationReport() {
  const animations = [];
  for (const img of document.querySelectorAll("img[id^='_anim_img']")) {
    const player = window["anim" + img.id.slice("_anim_img".length)];
    const frames = player ? player.frames : [];
    let broken = 0;
    for (const frame of frames) if (!(await loads(frame))) broken += 1;
    const buttons = Array.from(img.parentElement.querySelectorAll(".anim-buttons button"));
    const blank = buttons.filter(b => {
      const icon = b.firstElementChild;
      return !icon || icon.getBoundingClientRect().width < 4;
    }).map(b => b.title);
    animations.push({ started: Boolean(player), frames: frames.length, broken,
                      buttons: buttons.length, blankButtons: blank });
  }
  return animations;
}

(async () => {
  await new Promise(resolve => setTimeout(resolve, 50));  // animations start on a timeout
  // Lay the whole page out once, so that every image is asked for.
  window.scrollTo(0, document.documentElement.scrollHeight);
  window.scrollTo(0, 0);
  return {
    math: await mathReport(),
    rawLatex: rawLatex(),
    images: await imageReport(),
    animations: await animationReport(),
    links: Array.from(new Set(Array.from(document.querySelectorAll("a[href]"), a => a.href))),
    height: document.documentElement.scrollHeight,
  };
})().then(reportBack, e => reportBack({ failed: String(e && e.stack || e) }));
