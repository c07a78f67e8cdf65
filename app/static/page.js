// The page at / (and at /view/...): one image at a time, its seed and permanent link, a
// category picker, a "creativity" slider (truncation), morphs, arithmetic and an endless
// grid. Everything it loads comes from this service; the model's wording comes from its
// manifest (the config block the server writes into the page).
"use strict";

const config = JSON.parse(document.getElementById("config").textContent);
const $ = (id) => document.getElementById(id);
const GRID_TILES = 8;

const state = {
  model: config.model, // name of the model in use
  category: "", // the slug picked, or "" for any
  psi: 1,
  current: null, // {seed, category, version} of the image shown
  painting: 0, // the latest paint asked for: an older answer arriving late is dropped
};

function modelInfo() {
  return config.models.find((m) => m.name === state.model) || config.models[0];
}

// Seeds are kept as decimal strings: they run to 2^64 - 1, past what a JavaScript
// number holds exactly. New ones are drawn below 2^53, as /random's are.
function randomSeed() {
  const words = crypto.getRandomValues(new Uint32Array(2));
  return String((words[0] & 0x1fffff) * 2 ** 32 + words[1]);
}

function query(params) {
  const q = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== "" && value !== null && value !== undefined) q.set(key, String(value));
  }
  const text = q.toString();
  return text ? `?${text}` : "";
}

function psiParam() {
  return state.psi === 1 ? null : state.psi;
}

// The pinned image of a seed: immutable, cached, the same bytes on every visit.
function pinnedUrl(seed, category, size) {
  const m = modelInfo();
  return `/models/${m.name}/${m.version}/seed/${seed}` + query({ category, truncation: psiParam(), size });
}

function viewUrl(seed) {
  const m = modelInfo();
  return `/view/${m.name}/${m.version}/${seed}` + query({ category: state.category, truncation: psiParam() });
}

// --- talking to the service: errors and 503 --------------------------------------------

class ServiceError extends Error {
  constructor(message, retryAfter) {
    super(message);
    this.retryAfter = retryAfter;
  }
}

async function request(url, options) {
  let response;
  try {
    response = await fetch(url, options);
  } catch (error) {
    throw new ServiceError("The service cannot be reached. Is it running?", 5);
  }
  if (response.ok) return response;
  let detail = `${response.status} ${response.statusText}`;
  try {
    detail = (await response.json()).detail || detail;
  } catch (error) {
    /* not JSON: keep the status line */
  }
  if (response.status === 503 || response.status === 429) {
    const wait = Number(response.headers.get("Retry-After")) || 2;
    throw new ServiceError(
      `The painter is busy (or still warming up): ${detail}. Trying again in ${wait} s…`,
      wait,
    );
  }
  throw new ServiceError(detail, null);
}

let attempts = 0; // names each attempt, so one that succeeds clears only its own message

function say(message, owner) {
  const status = $("status");
  status.textContent = message || "";
  status.hidden = !message;
  status.dataset.owner = String(owner);
}

// Runs ``task``; a 503 is said and retried after Retry-After, other errors are said.
async function attempt(task) {
  const owner = ++attempts;
  for (;;) {
    try {
      const result = await task();
      if ($("status").dataset.owner === String(owner)) say("", owner);
      return result;
    } catch (error) {
      if (!(error instanceof ServiceError)) throw error;
      say(error.message, owner);
      if (error.retryAfter === null) return null;
      await new Promise((resolve) => setTimeout(resolve, error.retryAfter * 1000));
    }
  }
}

// POSTs ``body`` as JSON and shows the image that comes back in ``image``; false if none.
async function postForImage(url, body, image) {
  const blob = await attempt(async () => {
    const options = {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    };
    return (await request(url, options)).blob();
  });
  if (!blob) return false;
  if (image.src.startsWith("blob:")) URL.revokeObjectURL(image.src);
  image.src = URL.createObjectURL(blob);
  return true;
}

// --- the image on stage --------------------------------------------------------------

function show(blob, info) {
  const image = $("image");
  const old = image.src;
  image.src = URL.createObjectURL(blob);
  if (old.startsWith("blob:")) URL.revokeObjectURL(old);
  state.current = info;
  const m = modelInfo();
  $("seed").textContent = info.seed;
  const category = m.classes.find((c) => c.slug === info.category);
  $("category-line").hidden = !category;
  $("category-name").textContent = category ? category.name : "";
  image.alt = `${m.noun} number ${info.seed}, painted by a GAN`;
  $("permalink").href = viewUrl(info.seed);
  const download = $("download");
  download.href = image.src;
  download.download = `${m.name}-${m.version}-${info.seed}.png`;
  image.dataset.seed = info.seed;
}

async function paint(url) {
  const token = ++state.painting;
  await attempt(async () => {
    const response = await request(url);
    const blob = await response.blob();
    if (token !== state.painting) return; // a later click won
    show(blob, {
      seed: response.headers.get("X-Seed"),
      category: response.headers.get("X-Category") || "",
      version: Number(response.headers.get("X-Model-Version")),
    });
  });
}

// A fresh seed, shown through its pinned URL: the image a visitor sees is the very file
// its permanent link serves (the service's cache keeps those bytes), not a repaint that
// another batch might round one grey level apart.
function another() {
  return paint(pinnedUrl(randomSeed(), state.category || null));
}

// The same seed again (after the slider moved): its pinned image, in its own category.
function repaint() {
  if (!state.current) return another();
  const category = state.category || state.current.category;
  return paint(pinnedUrl(state.current.seed, category));
}

// --- controls ------------------------------------------------------------------------

function fillModels() {
  const select = $("model");
  select.replaceChildren(
    ...config.models.map((m) => new Option(`${m.title} (v${m.version})`, m.name, false, m.name === state.model)),
  );
  $("model-label").hidden = config.models.length < 2;
}

function fillCategories() {
  const m = modelInfo();
  const select = $("category");
  select.replaceChildren(new Option("any", ""), ...m.classes.map((c) => new Option(c.name, c.slug)));
  select.value = state.category;
  $("category-label").hidden = m.classes.length === 0;
}

function fillWording() {
  const m = modelInfo();
  document.title = m.title;
  $("headline").textContent = m.title;
  $("tagline").textContent = m.tagline;
  for (const span of document.querySelectorAll(".noun")) span.textContent = m.noun;
  $("about").textContent = m.about;
  $("credits").replaceChildren(
    ...m.credits.map((text) => {
      const item = document.createElement("li");
      item.textContent = text;
      return item;
    }),
  );
}

function onKey(event) {
  if (event.key !== " " || event.repeat) return;
  const target = event.target;
  // Space belongs to whatever control has the focus (buttons, fields, the slider).
  if (target.closest && target.closest("button, a, input, select, textarea")) return;
  event.preventDefault();
  another();
}

// --- morph ------------------------------------------------------------------------------

async function morph() {
  if (!state.current) return;
  const from = state.current.seed;
  const to = randomSeed();
  const m = modelInfo();
  const body = {
    from: { seed: from },
    to: { seed: to },
    steps: 24,
    fps: 12,
    bounce: true,
    format: "webp",
    model: m.name,
    category: state.category || state.current.category || undefined,
    truncation: state.psi,
  };
  $("morph").disabled = true;
  try {
    const image = $("morph-image");
    if (!(await postForImage("/interpolate", body, image))) return;
    image.dataset.from = from;
    image.dataset.to = to;
    const caption = $("morph-caption");
    const link = (seed) => {
      const a = document.createElement("a");
      a.href = viewUrl(seed);
      a.textContent = `seed ${seed}`;
      return a;
    };
    caption.replaceChildren(link(from), " ⇄ ", link(to));
    $("morph-panel").hidden = false;
    $("morph-panel").scrollIntoView({ behavior: "smooth", block: "nearest" });
  } finally {
    $("morph").disabled = false;
  }
}

// --- arithmetic -------------------------------------------------------------------------

function termSeed(id) {
  const text = $(id).value.trim();
  return /^[0-9]{1,20}$/.test(text) ? text : null;
}

function sumCategory() {
  return state.category || (state.current && state.current.category) || "";
}

function showTerms() {
  for (const key of ["a", "b", "c"]) {
    const seed = termSeed(`term-${key}`);
    const image = $(`term-${key}-image`);
    if (seed === null) image.removeAttribute("src");
    else image.src = pinnedUrl(seed, sumCategory() || null);
  }
}

async function combine(event) {
  if (event) event.preventDefault();
  const seeds = [termSeed("term-a"), termSeed("term-b"), termSeed("term-c")];
  if (seeds[0] === null || seeds[1] === null) {
    say("Arithmetic: give seeds A and B (whole numbers); C is optional.", "arithmetic");
    return;
  }
  showTerms();
  const weights = [1, Number($("op-b").value), Number($("op-c").value)];
  const terms = seeds.flatMap((seed, i) => (seed === null ? [] : [{ seed, weight: weights[i] }]));
  const body = { terms, model: state.model, category: sumCategory() || undefined, truncation: state.psi };
  await postForImage("/arithmetic", body, $("sum-image"));
}

// Short seeds for the sum's other terms: easy to read and to type in.
function shortSeed() {
  return String(crypto.getRandomValues(new Uint32Array(1))[0] % 1000000);
}

function shuffleTerms() {
  $("term-a").value = state.current ? state.current.seed : shortSeed();
  $("term-b").value = shortSeed();
  $("term-c").value = shortSeed();
  return combine();
}

// --- the endless grid ---------------------------------------------------------------------

let gridLoading = false;

async function moreTiles() {
  if (gridLoading) return;
  gridLoading = true;
  try {
    const url = "/grid" + query({
      n: GRID_TILES,
      columns: GRID_TILES,
      model: state.model,
      category: state.category,
      truncation: psiParam(),
    });
    const result = await attempt(async () => {
      const response = await request(url);
      return { blob: await response.blob(), first: BigInt(response.headers.get("X-Seed")) };
    });
    if (!result) return;
    const source = URL.createObjectURL(result.blob);
    const grid = $("grid");
    const m = modelInfo();
    for (let i = 0; i < GRID_TILES; i++) {
      const seed = String(result.first + BigInt(i));
      const tile = document.createElement("button");
      tile.type = "button";
      tile.style.backgroundImage = `url(${source})`;
      tile.style.backgroundPosition = `${(i * 100) / (GRID_TILES - 1)}% 0`;
      tile.setAttribute("aria-label", `${m.noun} number ${seed}`);
      tile.dataset.seed = seed;
      tile.addEventListener("click", () => {
        paint(pinnedUrl(seed, state.category || null));
        window.scrollTo({ top: 0, behavior: "smooth" });
      });
      grid.append(tile);
    }
  } finally {
    gridLoading = false;
  }
}

function startGrid() {
  $("grid").replaceChildren();
  moreTiles();
}

// --- start ----------------------------------------------------------------------------

function start() {
  state.model = config.model;
  fillModels();
  if (config.pinned) {
    state.category = config.pinned.category || "";
    state.psi = config.pinned.truncation;
    $("creativity").value = String(state.psi);
    $("creativity-value").textContent = state.psi.toFixed(2);
  }
  fillCategories();
  fillWording();

  $("another").addEventListener("click", another);
  $("morph").addEventListener("click", morph);
  document.addEventListener("keydown", onKey);
  $("model").addEventListener("change", (event) => {
    state.model = event.target.value;
    state.category = "";
    fillCategories();
    fillWording();
    another();
    startGrid();
  });
  $("category").addEventListener("change", (event) => {
    state.category = event.target.value;
    another();
    startGrid();
  });
  const slider = $("creativity");
  slider.addEventListener("input", () => {
    $("creativity-value").textContent = Number(slider.value).toFixed(2);
  });
  slider.addEventListener("change", () => {
    state.psi = Number(slider.value);
    repaint();
    startGrid();
  });
  $("sum-form").addEventListener("submit", combine);
  $("sum-shuffle").addEventListener("click", shuffleTerms);
  $("grid-more").addEventListener("click", moreTiles);
  new IntersectionObserver((entries) => {
    if (entries.some((entry) => entry.isIntersecting)) moreTiles();
  }, { rootMargin: "400px" }).observe($("grid-end"));

  moreTiles();
  const first = config.pinned
    ? paint(pinnedUrl(config.pinned.seed, config.pinned.category || null))
    : another();
  first.then(shuffleTerms);
}

start();
