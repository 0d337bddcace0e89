// The demo page: pick a bundle and images (or the camera), see the top-5 labels and the latency per image.
// With ?bundle=URL&auto=golden it loads the bundle, classifies its golden images and verifies its golden
// vectors by itself, and leaves the outcome in window.clippingEdge (what the headless-browser test reads).
import { BundleError, bitmapPixels, loadBundleFromFiles, loadBundleFromUrl, preprocess, preprocessSpec, verifyGolden } from "../src/browser.js";

const $ = (id) => document.getElementById(id);
const state = (window.clippingEdge = { state: "idle" });
let bundle = null, prototypes = null, prototypeKey = "";

function status(text, kind = "busy") {
  $("status").textContent = text;
  $("status").dataset.state = kind;
  state.state = kind;
  state.status = text;
}

function labels() {
  return $("labels").value.split("\n").map((s) => s.trim()).filter(Boolean);
}

async function ensurePrototypes(options = {}) {
  const names = labels();
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

/** Pixels of one image -> top-5 and the milliseconds of preprocessing + image tower. */
async function classifyPixels(pixels, names) {
  const start = performance.now();
  const embedding = await bundle.encodePixels(pixels, 1);
  const [predictions] = bundle.topK(embedding, prototypes, names, 5);
  return { predictions, ms: performance.now() - start };
}

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
  const spec = await goldenSpec();
  $("labels").value = spec.labels.join("\n");
  const names = await ensurePrototypes({ templates: spec.templates, synonyms: spec.synonyms });
  const top1 = await classifyGoldenImages(spec, async (pixels) => (await classifyPixels(pixels, names)).predictions);
  status("Verifying the golden vectors...");
  state.report = await verifyGolden(bundle);
  const r = state.report;
  status(`${r.passed ? "Golden vectors reproduced" : `Golden vectors FAILED: ${r.failures.join(", ")}`}: image cosine min ` +
    `${r.image_cosine_min.toFixed(6)}, text ${r.text_cosine_min.toFixed(6)}, pixels max abs ${r.pixels_max_abs.toFixed(4)}, ` +
    `top-1 ${top1.join(" / ")}; ${state.imageMs.toFixed(1)} ms per image (WASM, ${navigator.hardwareConcurrency} threads max)`, r.passed ? "done" : "error");
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

const query = new URLSearchParams(location.search);
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
