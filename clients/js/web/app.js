// The demo page: pick a bundle and images (or the camera), see the top-5 labels and the latency per image.
// ?labels=a,b fills the labels. With ?bundle=URL&auto=golden it loads the bundle, classifies its golden images and verifies its golden
// vectors by itself, and leaves the outcome in window.clippingEdge (what the headless-browser test reads).
import { BundleError, bitmapPixels, chooseHead, fitHead, headLogits, loadBundleFromFiles, loadBundleFromUrl, makeShots, preprocess,
  preprocessSpec, softmax, verifyGolden } from "../src/browser.js";

const $ = (id) => document.getElementById(id);
const state = (window.clippingEdge = { state: "idle" });
let bundle = null, prototypes = null, prototypeKey = "";
// Classes taught from photos: name -> { embeddings: Float32Array[], text: boolean }. With any, scores come from a
// few-shot head (mix or Tip-Adapter, chosen by leave-one-out on the shots) instead of the cosines alone.
const taught = new Map();
let head = null, headKey = "";

function status(text, kind = "busy") {
  $("status").textContent = text;
  $("status").dataset.state = kind;
  state.state = kind;
  state.status = text;
}

function labels() {
  return $("labels").value.split("\n").map((s) => s.trim()).filter(Boolean);
}

async function ensurePrototypes(names = labels(), options = {}) {
  const key = JSON.stringify([names, options]);
  if (key !== prototypeKey) {
    status(`Embedding the prompts of ${names.length} labels...`);
    const start = performance.now();
    prototypes = await bundle.prototypes(names, options.templates, options.synonyms);
    state.prototypesMs = performance.now() - start;
    prototypeKey = key;
  }
  return names;
}

async function useBundle(load) {
  status("Loading the bundle...");
  const start = performance.now();
  bundle = await load();
  state.loadMs = performance.now() - start;
  prototypes = null;
  prototypeKey = "";
  const m = bundle.manifest;
  if (!labels().length && m.synonyms && Object.keys(m.synonyms).length) $("labels").value = Object.keys(m.synonyms).join("\n");
  status(`Loaded ${m.model_name} (${m.precision}, ${m.image_size} px, ${m.embed_dim}-d). Choose images.`, "done");
}

function show(thumbnail, predictions, ms) {
  const row = document.createElement("div");
  row.className = "result";
  const lines = predictions.map((p) => `<tr><td>${escape(p.label)}</td><td>${p.score.toFixed(3)}</td>` +
    `<td><div class="bar" style="width:${Math.round(p.score * 160)}px"></div></td></tr>`).join("");
  row.innerHTML = `<table>${lines}</table><small>${ms.toFixed(1)} ms</small>`;
  row.prepend(thumbnail);
  $("results").prepend(row);
}

function escape(text) {
  return text.replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
}

/** The classes: the typed labels, then the taught ones not among them; and the head over them (null: zero-shot). */
async function fewShotHead(names) {
  if (!taught.size) return { classes: names, head: null };
  const classes = [...names, ...[...taught.keys()].filter((n) => !names.includes(n))];
  const key = JSON.stringify([classes, [...taught].map(([n, t]) => [n, t.embeddings.length, t.text])]);
  if (key !== headKey) {
    const d = bundle.embedDim;
    const hasText = classes.map((n) => names.includes(n) || (taught.get(n)?.text ?? true));
    const named = classes.filter((_, c) => hasText[c]);
    const textRows = named.length ? await bundle.prototypes(named) : new Float32Array(0);
    const text = new Float32Array(classes.length * d), labels = [], rows = [];
    let t = 0;
    classes.forEach((n, c) => {
      const shots = taught.get(n)?.embeddings ?? [];
      shots.forEach((e) => { rows.push(e); labels.push(c); });
      if (hasText[c]) text.set(textRows.subarray(t * d, ++t * d), c * d);
      else {  // a class known only from photos: its shots' normalised mean stands where text would
        const mean = new Float64Array(d);
        shots.forEach((e) => e.forEach((v, j) => { mean[j] += v; }));
        const norm = Math.hypot(...mean) || 1;
        mean.forEach((v, j) => { text[c * d + j] = v / norm; });
      }
    });
    const embeddings = new Float32Array(rows.length * d);
    rows.forEach((e, i) => embeddings.set(e, i * d));
    const shots = makeShots(text, hasText, embeddings, labels, d);
    const choice = chooseHead(shots, bundle.manifest.logit_scale);
    head = { ...fitHead(choice.method, shots, bundle.manifest.logit_scale, choice.settings), choice, classes };
    headKey = key;
    state.fewshot = { classes, method: choice.method, settings: choice.settings, loo: choice.loo, zeroShotLoo: choice.zeroShot };
    $("shot-classes").innerHTML = [...taught].map(([n, t]) => `<li>${escape(n)}: ${t.embeddings.length} photo(s)` +
      `${t.text ? "" : ", no text"}</li>`).join("") + `<li><small>head: ${choice.method} ${JSON.stringify(choice.settings)}, ` +
      `leave-one-out ${(100 * choice.loo).toFixed(0)} % (zero-shot ${(100 * choice.zeroShot).toFixed(0)} %)</small></li>`;
  }
  return { classes: head.classes, head };
}

/** Pixels of one image -> top-5 and the milliseconds of preprocessing + image tower. */
async function classifyPixels(pixels, names) {
  const start = performance.now();
  const embedding = await bundle.encodePixels(pixels, 1);
  const { classes, head: fitted } = await fewShotHead(names);
  let predictions;
  if (fitted) {
    const scores = softmax(Array.from(headLogits(fitted, embedding)));
    predictions = scores.map((score, c) => ({ label: classes[c], score })).sort((a, b) => b.score - a.score).slice(0, 5);
  } else {
    [predictions] = bundle.topK(embedding, prototypes, names, 5);
  }
  return { predictions, ms: performance.now() - start };
}

/** Teach a class from image bytes (files, camera frames): their embeddings become its shots. */
async function addClass(name, images, text = true) {
  name = name.trim();
  if (!name) throw new BundleError("give the class a name first");
  const embeddings = [];
  for (const bytesOrPixels of images) {
    const pixels = bytesOrPixels instanceof Float32Array ? bytesOrPixels : await bundle.preprocess(bytesOrPixels, name);
    embeddings.push(await bundle.encodePixels(pixels, 1));
  }
  const entry = taught.get(name) ?? { embeddings: [], text };
  entry.embeddings.push(...embeddings);
  taught.set(name, entry);
  await fewShotHead(labels());
  status(`Taught "${name}" from ${entry.embeddings.length} photo(s): head ${head.choice.method}.`, "done");
}
state.addClass = addClass;

async function classifyFiles(files) {
  const names = await ensurePrototypes();
  for (const file of files) {
    const start = performance.now();
    const pixels = await bundle.preprocess(new Uint8Array(await file.arrayBuffer()), file.name);
    const { predictions } = await classifyPixels(pixels, names);
    const img = document.createElement("img");
    img.src = URL.createObjectURL(file);
    show(img, predictions, performance.now() - start);
  }
  status(`Classified ${files.length} image(s).`, "done");
}

async function startCamera() {
  const video = $("video");
  video.srcObject = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" } });
  video.hidden = false;
  await video.play();
  const names = await ensurePrototypes();
  const tick = async () => {
    if (video.paused || !bundle) return;
    const start = performance.now();
    const pixels = preprocess(bitmapPixels(video, video.videoWidth, video.videoHeight), preprocessSpec(bundle.manifest));
    const { predictions } = await classifyPixels(pixels, names);
    $("results").replaceChildren();
    const canvas = document.createElement("canvas");
    canvas.width = canvas.height = 96;
    canvas.getContext("2d").drawImage(video, 0, 0, 96, 96);
    show(canvas, predictions, performance.now() - start);
    state.cameraFrames = (state.cameraFrames ?? 0) + 1;
    state.cameraTop1 = predictions[0].label;
    setTimeout(tick, 250);
  };
  tick();
}

async function goldenSpec() {
  return JSON.parse(new TextDecoder().decode(await bundle.env.readFile(bundle.manifest.golden)));
}

/** Each golden image through `classify` (pixels -> top-5), shown as it comes; then the steady-state
 * milliseconds of one image (after a warm-up). Leaves top-1s, Python's top-1s and timings in `state`. */
async function classifyGoldenImages(spec, classify) {
  const folder = bundle.manifest.golden.split("/").slice(0, -1).join("/");
  const top1 = [];
  let first;
  for (const name of spec.images) {
    const bytes = await bundle.env.readFile(`${folder}/${name}`);
    const start = performance.now();
    const pixels = await bundle.preprocess(bytes, name);
    const predictions = await classify(pixels);
    show(Object.assign(document.createElement("img"), { src: URL.createObjectURL(new Blob([bytes])) }), predictions,
      performance.now() - start);
    state.firstResultMs ??= performance.now(); // since navigation started: load + prototypes + one image
    top1.push(predictions[0].label);
    first ??= pixels;
  }
  await classify(first);
  const runs = 10, start = performance.now();
  for (let i = 0; i < runs; i++) await classify(first);
  Object.assign(state, { top1, expectedTop1: spec.expected_top_k.map((row) => row[0].label), imageMs: (performance.now() - start) / runs });
  return top1;
}

/** Classify the bundle's golden images with its golden labels, then check every golden vector. */
async function golden() {
  const spec = await goldenSpec();  // its own labels, not the typed ones: those stay as the user left them
  const names = await ensurePrototypes(spec.labels, { templates: spec.templates, synonyms: spec.synonyms });
  const top1 = await classifyGoldenImages(spec, async (pixels) => (await classifyPixels(pixels, names)).predictions);
  status("Verifying the golden vectors...");
  const report = await verifyGolden(bundle);
  if (spec.fewshot) await teachGoldenShots(spec);
  state.report = report;  // last: the browser test waits for it
  const r = state.report;
  status(`${r.passed ? "Golden vectors reproduced" : `Golden vectors FAILED: ${r.failures.join(", ")}`}: image cosine min ` +
    `${r.image_cosine_min.toFixed(6)}, text ${r.text_cosine_min.toFixed(6)}, pixels max abs ${r.pixels_max_abs.toFixed(4)}, ` +
    `top-1 ${top1.join(" / ")}; ${state.imageMs.toFixed(1)} ms per image (WASM, ${navigator.hardwareConcurrency} threads max)`, r.passed ? "done" : "error");
}

/** The page's few-shot path on the golden shots: the first shot class taught again under a new name, from its
 * photos alone, must then be the top-1 of one of those photos (what the browser test checks). */
async function teachGoldenShots(spec) {
  const folder = bundle.manifest.golden.split("/").slice(0, -1).join("/");
  const first = spec.fewshot.shot_labels[0];
  const files = spec.fewshot.shots.filter((_, i) => spec.fewshot.shot_labels[i] === first);
  const bytes = await Promise.all(files.map((name) => bundle.env.readFile(`${folder}/${name}`)));
  await addClass("taught from photos", bytes, false);
  const { predictions } = await classifyPixels(await bundle.preprocess(bytes[0], files[0]), spec.labels);
  state.fewshotTop1 = predictions[0].label;
}

/** The app-ready classifier (`export --labels`) on the golden images: only its one file is loaded. */
async function classifierOnGolden() {
  const top1 = await classifyGoldenImages(await goldenSpec(), (pixels) => bundle.classifyWithClassifier(pixels, 5));
  state.report = { classifier: bundle.manifest.classifier.file, labels: bundle.classifierLabels.length };
  status(`App-ready classifier (${bundle.classifierLabels.length} labels): top-1 ${top1.join(" / ")}; ` +
    `first result ${state.firstResultMs.toFixed(0)} ms after page load, ${state.imageMs.toFixed(1)} ms per image (WASM)`, "done");
}

function guard(action) {
  return async (...args) => {
    try {
      await action(...args);
    } catch (error) {
      status(error instanceof BundleError ? error.message : `${error.name}: ${error.message}`, "error");
      state.error = String(error);
      if (!(error instanceof BundleError)) console.error(error);
    }
  };
}

$("bundle-folder").addEventListener("change", guard((e) => useBundle(() => loadBundleFromFiles(e.target.files))));
$("load-url").addEventListener("click", guard(() => useBundle(() => loadBundleFromUrl($("bundle-url").value))));
$("images").addEventListener("change", guard((e) => (bundle ? classifyFiles([...e.target.files]) : status("Choose a bundle first.", "error"))));
$("camera").addEventListener("click", guard(() => (bundle ? startCamera() : status("Choose a bundle first.", "error"))));
$("golden").addEventListener("click", guard(() => (bundle ? golden() : status("Choose a bundle first.", "error"))));
$("shot-files").addEventListener("change", guard(async (e) => {
  if (!bundle) return status("Choose a bundle first.", "error");
  await addClass($("shot-name").value, await Promise.all([...e.target.files].map(async (f) => new Uint8Array(await f.arrayBuffer()))),
    $("shot-text").checked);
}));
$("shot-camera").addEventListener("click", guard(async () => {
  if (!bundle) return status("Choose a bundle first.", "error");
  const video = $("video");
  if (video.hidden) await startCamera();
  const frames = [];
  for (let i = 0; i < 5; i++) {
    frames.push(preprocess(bitmapPixels(video, video.videoWidth, video.videoHeight), preprocessSpec(bundle.manifest)));
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  await addClass($("shot-name").value, frames, $("shot-text").checked);
}));

const query = new URLSearchParams(location.search);
if (query.get("labels")) $("labels").value = query.get("labels").split(",").join("\n");  // ?labels=cat,dog
if (query.get("bundle")) {
  $("bundle-url").value = query.get("bundle");
  guard(async () => {
    const classifierOnly = query.get("auto") === "classifier";
    const numThreads = Number(query.get("threads")) || undefined; // WebAssembly threads (default: onnxruntime-web's choice)
    await useBundle(() => loadBundleFromUrl(query.get("bundle"), { parts: classifierOnly ? "classifier" : "towers", numThreads }));
    if (query.get("auto") === "golden") await golden();
    if (classifierOnly) await classifierOnGolden();
  })();
}
