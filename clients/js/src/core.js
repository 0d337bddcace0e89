// A clipping-edge ONNX bundle in JavaScript: the part that is the same in Node and in a browser.
//
// What a bundle is (docs/apps.md): manifest.json, image and text towers, tokenizer.json and golden vectors.
// The environment supplies three things: reading a bundle file as bytes, an ONNX Runtime (onnxruntime-node
// or onnxruntime-web), and an image decoder. Everything else (checks, tokenizing, preprocessing,
// prototypes, scores) is here and mirrors the Python runtime (clipping_edge/), so its answers can be
// checked against the bundle's golden vectors with verifyGolden().
import { fitHead, headLogits, makeShots } from "./fewshot.js";
import { preprocess, preprocessSpec } from "./preprocess.js";
import { TextTokenizer } from "./tokenizer.js";

export { preprocess, preprocessSpec, resize } from "./preprocess.js";
export { TextTokenizer } from "./tokenizer.js";
export { chooseHead, fitHead, headLogits, makeShots } from "./fewshot.js";

export const FORMAT_VERSION = 2;
export const GOLDEN_FORMAT = "clipping-edge golden vectors 1";
// The Python runtime's batch sizes (clipping_edge/model.py). A tower whose activations are quantized with one
// scale per call (dynamic int8, manifest quantization.<tower>.rows_alone) runs one row at a time instead, so
// no embedding depends on what shares its batch.
export const IMAGE_BATCH = 32, TEXT_BATCH = 256;

/** An error meant for a person: what is wrong and what to do, in one line. */
export class BundleError extends Error {}

function checkName(name, what) {
  if (typeof name !== "string" || !name || name.startsWith("/") || name.split(/[\\/]/).includes("..")) {
    throw new BundleError(`manifest ${what} ${JSON.stringify(name)} points outside the bundle: the manifest is corrupt or hostile`);
  }
  return name;
}

async function sha256Hex(bytes) {
  const digest = new Uint8Array(await globalThis.crypto.subtle.digest("SHA-256", bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Python's sorted() of pathlib paths: part by part, so "images/0.png" sorts before "images.json". */
function comparePaths(a, b) {
  const pa = a.split("/"), pb = b.split("/");
  for (let i = 0; i < Math.min(pa.length, pb.length); i++) {
    if (pa[i] !== pb[i]) return pa[i] < pb[i] ? -1 : 1;
  }
  return pa.length - pb.length;
}

/** File bytes -> the JSON value, or one BundleError naming the file (JSON has no NaN: a NaN scale is invalid JSON). */
export function parseJson(bytes, name) {
  try {
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch (error) {
    throw new BundleError(`${name} is not valid JSON (${error.message}): re-export the bundle`);
  }
}

/** Class names as Python's check_labels takes them: trimmed, none empty, none twice. */
export function checkLabels(labels) {
  const names = labels.map((s) => String(s).trim());
  if (!names.length) throw new BundleError("the label list is empty: pass at least one class name");
  if (names.some((s) => !s)) throw new BundleError("the label list has an empty name: remove blank entries from the labels");
  const repeated = [...new Set(names.filter((s, i) => names.indexOf(s) !== i))];
  if (repeated.length) throw new BundleError(`the label list repeats ${repeated.slice(0, 5).map((s) => `'${s}'`).join(", ")}: give each class once (put alternative names in synonyms)`);
  return names;
}

export function checkManifest(manifest) {
  if (typeof manifest !== "object" || manifest === null) throw new BundleError("manifest.json is not a JSON object: re-export the bundle");
  if (manifest.format_version !== FORMAT_VERSION) {
    throw new BundleError(`manifest.json has bundle format version ${manifest.format_version}, this client reads ${FORMAT_VERSION}: re-export the bundle`);
  }
  if (manifest.target !== "onnx") {
    throw new BundleError(`this is a ${manifest.target} bundle; the JavaScript client runs ONNX bundles: export with --target onnx`);
  }
  for (const key of ["embed_dim", "image_size", "context_length"]) {
    if (!Number.isInteger(manifest[key]) || manifest[key] < 1) throw new BundleError(`manifest.json: ${key} is ${manifest[key]}, expected a positive integer: re-export the bundle`);
  }
  if (!(Number.isFinite(manifest.logit_scale) && manifest.logit_scale > 0 && manifest.logit_scale <= 100)) {
    throw new BundleError(`manifest.json: logit_scale is ${manifest.logit_scale}, expected a number in (0, 100]: re-export the bundle`);
  }
  for (const key of ["image_tower", "text_tower", "tokenizer"]) checkName(manifest[key], key);
  for (const name of Object.keys(manifest.files ?? {})) checkName(name, "file");
  return manifest;
}

export function softmax(logits) {
  const max = Math.max(...logits);
  const e = logits.map((v) => Math.exp(v - max));
  const sum = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / sum);
}

function normalize(row) {
  let norm = 0;
  for (const v of row) norm += v * v;
  norm = Math.sqrt(norm);
  return row.map((v) => v / norm);
}

/** Row-wise cosines of two (n, d) arrays, with Python's rules: two zero rows agree, NaN stays NaN. */
export function rowCosines(a, b, d) {
  const out = [];
  for (let r = 0; r < a.length / d; r++) {
    let dot = 0, na = 0, nb = 0;
    for (let i = r * d; i < (r + 1) * d; i++) { dot += a[i] * b[i]; na += a[i] * a[i]; nb += b[i] * b[i]; }
    out.push(na === 0 && nb === 0 ? 1 : (na === 0) !== (nb === 0) ? 0 : dot / Math.sqrt(na * nb));
  }
  return out;
}

export class ClipBundle {
  /**
   * @param {object} env
   * @param {(name: string) => Promise<Uint8Array>} env.readFile a bundle file's bytes
   * @param {object} env.ort onnxruntime-node or onnxruntime-web
   * @param {(bytes: Uint8Array, name: string) => Promise<{data, width, height, channels}>} env.decodeImage
   * @param {object} [env.sessionOptions] passed to ort.InferenceSession.create
   */
  static async open(env, { parts = "towers" } = {}) {
    // parts: "towers" (labels chosen at run time), "classifier" (only the app-ready classifier of
    // `export --labels`: one small file, the fastest start), or "all".
    const bundle = new ClipBundle(env);
    const manifest = parseJson(await env.readFile("manifest.json"), "manifest.json");
    bundle.manifest = checkManifest(manifest);
    if (parts !== "classifier") {
      bundle.tokenizer = new TextTokenizer(parseJson(await bundle.verifiedFile(manifest.tokenizer), manifest.tokenizer), manifest.context_length);
      bundle.imageSession = await bundle.session(manifest.image_tower);
      // A bundle that classifies from a prototype index may leave the text tower out.
      bundle.textSession = manifest.text_tower in manifest.files ? await bundle.session(manifest.text_tower) : null;
    }
    if (parts !== "towers") {
      if (!manifest.classifier?.file) throw new BundleError("this bundle has no app-ready classifier: export it with --labels");
      // The ORT-format copy loads faster (already optimized, no protobuf to parse) where there is one.
      bundle.classifierSession = await bundle.session(manifest.classifier.ort_file ?? manifest.classifier.file);
    }
    return bundle;
  }

  /** The app-ready classifier's labels, in score order. */
  get classifierLabels() {
    return this.manifest.classifier?.labels ?? [];
  }

  /** Preprocessed pixels of one image (3 * S * S floats) -> the app-ready classifier's top k {label, score}. */
  async classifyWithClassifier(pixels, k = 5) {
    if (!this.classifierSession) throw new BundleError("open the bundle with parts \"classifier\" or \"all\" to use its classifier");
    const size = this.manifest.image_size;
    const scores = await this.run(this.classifierSession, "float32", pixels, [1, 3, size, size]);
    const labels = this.classifierLabels;
    return labels.map((label, c) => ({ label, score: scores[c] })).sort((a, b) => b.score - a.score).slice(0, k);
  }

  constructor(env) {
    this.env = env;
  }

  /** A file listed in the manifest, after checking its SHA-256 against the one recorded there. */
  async verifiedFile(name) {
    const recorded = this.manifest.files[checkName(name, "file")];
    if (!recorded) throw new BundleError(`the manifest records no checksum for ${name}: re-export the bundle`);
    const bytes = await this.env.readFile(name);
    if ((await sha256Hex(bytes)) !== recorded) {
      throw new BundleError(`bundle file ${name} does not match the checksum in its manifest (damaged or modified): copy the bundle again, or re-export it`);
    }
    return bytes;
  }

  async session(name) {
    const bytes = await this.verifiedFile(name);
    const session = await this.env.ort.InferenceSession.create(bytes, this.env.sessionOptions ?? {});
    return { session, input: session.inputNames[0], output: session.outputNames[0] };
  }

  async run({ session, input, output }, type, data, dims) {
    const result = await session.run({ [input]: new this.env.ort.Tensor(type, data, dims) });
    return result[output].data;
  }

  get embedDim() {
    return this.manifest.embed_dim;
  }

  /** Image file bytes -> Float32Array (3, S, S) as the image tower takes it. */
  async preprocess(bytes, name = "<bytes>") {
    return preprocess(await this.env.decodeImage(bytes, name), preprocessSpec(this.manifest));
  }

  /** Preprocessed pixels (n * 3 * S * S floats) -> Float32Array (n, d) of L2-normalised embeddings. */
  rowsAlone(kind) {
    return Boolean(this.manifest.quantization?.[kind]?.rows_alone);
  }

  async encodePixels(pixels, n, batch = this.rowsAlone("image") ? 1 : IMAGE_BATCH) {
    const size = this.manifest.image_size, per = 3 * size * size, d = this.embedDim;
    const out = new Float32Array(n * d);
    for (let start = 0; start < n; start += batch) {
      const count = Math.min(batch, n - start);
      const rows = pixels.subarray(start * per, (start + count) * per);
      out.set(await this.run(this.imageSession, "float32", rows, [count, 3, size, size]), start * d);
    }
    return out;
  }

  async encodeImages(images) {
    const size = this.manifest.image_size, per = 3 * size * size;
    const pixels = new Float32Array(images.length * per);
    for (let i = 0; i < images.length; i++) pixels.set(await this.preprocess(images[i]), i * per);
    return this.encodePixels(pixels, images.length);
  }

  /** Texts -> Float32Array (n, d). */
  async encodeTexts(texts, batch = this.rowsAlone("text") ? 1 : TEXT_BATCH) {
    if (!this.textSession) throw new BundleError("this bundle has no text tower: export it with one, or classify with a prototype index");
    const L = this.manifest.context_length, d = this.embedDim;
    const out = new Float32Array(texts.length * d);
    for (let start = 0; start < texts.length; start += batch) {
      const chunk = texts.slice(start, start + batch);
      out.set(await this.run(this.textSession, "int32", this.tokenizer.encode(chunk), [chunk.length, L]), start * d);
    }
    return out;
  }

  /** Per label every template x synonym embedded, averaged, normalised: Float32Array (labels.length, d).
   * Without templates, the bundle's own (those its export was validated with), as the Python runtime. */
  async prototypes(labels, templates, synonyms) {
    if (!labels.length) throw new BundleError("the label list is empty: pass at least one class name");
    if (templates === undefined && synonyms === undefined) {
      templates = this.manifest.templates?.length ? this.manifest.templates : DEFAULT_TEMPLATES;
      synonyms = this.manifest.synonyms;
    }
    templates = templates ?? DEFAULT_TEMPLATES;
    synonyms = synonyms ?? {};
    const texts = [], owner = [];
    labels.forEach((label, c) => {
      for (const name of synonyms[label]?.length ? synonyms[label] : [label]) {
        for (const template of templates) {
          texts.push(template.includes("{}") ? template.replace("{}", name) : `${template} ${name}`);
          owner.push(c);
        }
      }
    });
    const embeddings = await this.encodeTexts(texts);
    const d = this.embedDim;
    const sums = Array.from(labels, () => new Float64Array(d));
    owner.forEach((c, i) => { for (let j = 0; j < d; j++) sums[c][j] += embeddings[i * d + j]; });
    const out = new Float32Array(labels.length * d);
    sums.forEach((row, c) => out.set(normalize(row), c * d));
    return out;
  }

  /** Embeddings (n, d) against prototypes -> per image the top k {label, score, cosine}, best first. */
  topK(embeddings, prototypes, labels, k = 5) {
    const d = this.embedDim, n = embeddings.length / d;
    const results = [];
    for (let i = 0; i < n; i++) {
      const cosines = labels.map((_, c) => {
        let dot = 0;
        for (let j = 0; j < d; j++) dot += embeddings[i * d + j] * prototypes[c * d + j];
        return dot;
      });
      const scores = softmax(cosines.map((v) => this.manifest.logit_scale * v));
      const order = cosines.map((_, c) => c).sort((a, b) => scores[b] - scores[a] || a - b).slice(0, k);
      results.push(order.map((c) => ({ label: labels[c], score: scores[c], cosine: cosines[c] })));
    }
    return results;
  }

  /** Image file bytes -> top-k labels, building the labels' prototypes (pass them in to reuse them). */
  async classify(images, labels, { k = 5, prototypes } = {}) {
    prototypes = prototypes ?? (await this.prototypes(labels));
    return this.topK(await this.encodeImages(images), prototypes, labels, k);
  }
}

// CLIP's 7-template ImageNet ensemble, as clipping_edge/prompts.py (used when a bundle records none).
export const DEFAULT_TEMPLATES = [
  "itap of a {}.", "a bad photo of the {}.", "a origami {}.", "a photo of the large {}.",
  "a {} in a video game.", "art of the {}.", "a photo of the small {}.",
];

function readArray(bytes, spec) {
  const buffer = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
  const array = spec.dtype === "int32" ? new Int32Array(buffer) : new Float32Array(buffer);
  const expected = spec.shape.reduce((a, b) => a * b, 1);
  if (array.length !== expected) throw new BundleError(`golden/${spec.file} holds ${array.length} values, golden.json says ${spec.shape}: re-export the bundle`);
  return array;
}

/**
 * Re-compute the bundle's golden vectors with this client and compare, as `clipping-edge verify` does in
 * Python: the worst cosine per tower, pixel and score differences, token-id and top-k mismatches.
 */
export async function verifyGolden(bundle) {
  const manifest = bundle.manifest;
  if (!manifest.golden) throw new BundleError("this bundle has no golden vectors (exported before they existed): re-export it");
  const folder = manifest.golden.split("/").slice(0, -1).join("/");
  const goldenBytes = await bundle.env.readFile(manifest.golden);
  const golden = parseJson(goldenBytes, manifest.golden);
  if (typeof golden !== "object" || golden === null || !Array.isArray(golden.images) || typeof golden.arrays !== "object" ||
    golden.arrays === null || !Array.isArray(golden.labels) || typeof golden.tolerances !== "object" || golden.tolerances === null) {
    throw new BundleError(`${manifest.golden} lacks its images, labels, arrays or tolerances: re-export the bundle`);
  }
  if (golden.format !== GOLDEN_FORMAT) throw new BundleError(`${manifest.golden} is not ${GOLDEN_FORMAT}: re-export the bundle`);
  // The folder's checksum covers every file in it (sorted paths and contents), as Python's file_sha256.
  const fewshot = golden.fewshot;
  const names = [manifest.golden.slice(folder.length + 1), ...golden.images, ...Object.values(golden.arrays).map((s) => s.file),
    ...(fewshot ? [...fewshot.shots, ...Object.values(fewshot.arrays).map((s) => s.file)] : [])].sort(comparePaths);
  const files = {};
  const parts = [];
  for (const name of names) {
    files[name] = await bundle.env.readFile(`${folder}/${name}`);
    parts.push(new TextEncoder().encode(`${name}\0`), files[name]);
  }
  const joined = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  parts.reduce((offset, p) => (joined.set(p, offset), offset + p.length), 0);
  if ((await sha256Hex(joined)) !== manifest.files[folder]) {
    throw new BundleError(`bundle folder ${folder}/ does not match the checksum in its manifest (damaged, modified or incomplete): copy the bundle again, or re-export it`);
  }
  const arrays = Object.fromEntries(Object.entries(golden.arrays).map(([key, spec]) => [key, readArray(files[spec.file], spec)]));
  const tolerance = golden.tolerances;
  const size = manifest.image_size, per = 3 * size * size, d = bundle.embedDim, L = manifest.context_length;
  const n = golden.images.length;

  const started = performance.now();
  const pixels = new Float32Array(n * per);
  for (let i = 0; i < n; i++) pixels.set(await bundle.preprocess(files[golden.images[i]], golden.images[i]), i * per);
  const preprocessMs = performance.now() - started;
  let pixelsMaxAbs = 0;
  pixels.forEach((v, i) => { pixelsMaxAbs = Math.max(pixelsMaxAbs, Math.abs(v - arrays.pixels[i])); });
  const image = await bundle.encodePixels(arrays.pixels, n);
  const ids = bundle.tokenizer.encode(golden.prompts);
  let tokenRowsDifferent = 0;
  for (let r = 0; r < golden.prompts.length; r++) {
    if (ids.subarray(r * L, (r + 1) * L).some((v, j) => v !== arrays.token_ids[r * L + j])) tokenRowsDifferent++;
  }
  const text = await bundle.encodeTexts(golden.prompts);
  const prototypes = await bundle.prototypes(golden.labels, golden.templates, golden.synonyms);
  const found = bundle.topK(image, prototypes, golden.labels, golden.expected_top_k[0].length);
  const expected = golden.expected_top_k;
  let scoreMaxAbs = 0;
  found.forEach((row, i) => row.forEach((p, j) => { scoreMaxAbs = Math.max(scoreMaxAbs, Math.abs(p.score - expected[i][j].score)); }));
  const report = {
    images: n, prompts: golden.prompts.length, labels: golden.labels.length,
    pixels_max_abs: pixelsMaxAbs,
    image_cosine_min: Math.min(...rowCosines(image, arrays.image_embeddings, d)),
    text_cosine_min: Math.min(...rowCosines(text, arrays.text_embeddings, d)),
    prototype_cosine_min: Math.min(...rowCosines(prototypes, arrays.prototypes, d)),
    token_id_rows_different: tokenRowsDifferent,
    top_k_different: found.map((row, i) => row.map((p) => p.label).join("\n") === expected[i].map((p) => p.label).join("\n") ? -1 : i).filter((i) => i >= 0),
    score_max_abs: scoreMaxAbs,
    top1: found.map((row) => row[0].label),
    preprocess_ms_per_image: preprocessMs / n,
  };
  const checks = [];
  if (fewshot) {
    // Every head method re-fitted on the golden shots as this client embeds them, then the golden images scored.
    const shotEmbeddings = await bundle.encodeImages(fewshot.shots.map((name) => files[name]));
    const expectedShots = readArray(files[fewshot.arrays.shot_embeddings.file], fewshot.arrays.shot_embeddings);
    const shots = makeShots(prototypes, fewshot.has_text, shotEmbeddings, fewshot.shot_labels, d);
    let worst = 0;
    const different = [];
    for (const [method, head] of Object.entries(fewshot.heads)) {
      const logits = headLogits(fitHead(method, shots, golden.logit_scale, head.settings), image);
      const C = golden.labels.length;
      for (let i = 0; i < n; i++) {
        const scores = softmax(Array.from(logits.subarray(i * C, (i + 1) * C)));
        const top = scores.indexOf(Math.max(...scores));
        if (golden.labels[top] !== head.expected_top_k[i][0].label) different.push(`${method}:${i}`);
        for (const e of head.expected_top_k[i]) worst = Math.max(worst, Math.abs(scores[golden.labels.indexOf(e.label)] - e.score));
      }
    }
    Object.assign(report, { fewshot_shot_cosine_min: Math.min(...rowCosines(shotEmbeddings, expectedShots, d)),
      fewshot_score_max_abs: worst, fewshot_top1_different: different });
    checks.push(["few-shot shots", report.fewshot_shot_cosine_min >= tolerance.image_min_cosine],
      ["few-shot top-1", different.length === 0], ["few-shot scores", worst <= tolerance.score_max_abs]);
  }
  // "not (value passes)", so that NaN fails.
  const failures = [
    ...checks,
    ["pixels", report.pixels_max_abs <= tolerance.pixels_max_abs],
    ["image embeddings", report.image_cosine_min >= tolerance.image_min_cosine],
    ["text embeddings", report.text_cosine_min >= tolerance.text_min_cosine],
    ["prototypes", report.prototype_cosine_min >= tolerance.text_min_cosine],
    ["token ids", report.token_id_rows_different === 0],
    ["top-1", found.every((row, i) => row[0].label === expected[i][0].label)],
    ["scores", report.score_max_abs <= tolerance.score_max_abs],
  ].filter(([, ok]) => !ok).map(([name]) => name);
  return { ...report, tolerances: tolerance, failures, passed: failures.length === 0 };
}
