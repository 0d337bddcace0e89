// Few-shot classes, as the Python runtime fits them (clipping_edge/fewshot.py): every method gives logits of one form,
//   logits(x) = x · Wᵀ + b + w · exp(−β (1 − x · Sᵀ)) · onehot(L)
// mix (prototype mixing), tip (Tip-Adapter's cache of shots) and lda (shrinkage LDA added to zero-shot). `fitHead`
// builds a head from given settings (a golden file's, or an index's); `chooseHead` picks mix or tip settings by
// leave-one-out on the shots (the page's "add a class"), from a grid that starts at plain zero-shot.

const MIX_ALPHAS = [1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0];
const TIP_BETAS = [1.0, 3.0, 5.5, 10.0, 20.0];
const TIP_WEIGHTS = [0.0, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0];

function normalized(row) {
  let norm = 0;
  for (const v of row) norm += v * v;
  norm = Math.sqrt(norm) || 1;
  return row.map((v) => v / norm);
}

function dot(a, aOffset, b, bOffset, d) {
  let s = 0;
  for (let j = 0; j < d; j++) s += a[aOffset + j] * b[bOffset + j];
  return s;
}

/**
 * The shots as the methods read them.
 * @param {Float32Array} text (C, d) normalised text prototypes (a shot-only class: its shots' normalised mean)
 * @param {boolean[]} hasText
 * @param {Float32Array} embeddings (N, d) normalised shot embeddings
 * @param {number[]} labels (N) class of each shot
 */
export function makeShots(text, hasText, embeddings, labels, d) {
  return { text, hasText, embeddings, labels, d, classes: hasText.length };
}

/** (C, d) normalised mean of each class's shots, leaving shot `without` out, and which classes have any. */
function imagePrototypes(shots, without = -1) {
  const { d, classes } = shots;
  const sums = Array.from({ length: classes }, () => new Float64Array(d));
  const counts = new Array(classes).fill(0);
  shots.labels.forEach((c, i) => {
    if (i === without) return;
    counts[c]++;
    for (let j = 0; j < d; j++) sums[c][j] += shots.embeddings[i * d + j];
  });
  return { rows: sums.map((row) => normalized(Array.from(row))), present: counts.map((n) => n > 0) };
}

function fitMix(shots, scale, alpha, without = -1) {
  const { d, classes } = shots;
  const { rows: image, present } = imagePrototypes(shots, without);
  const weights = new Float32Array(classes * d), bias = new Float32Array(classes);
  for (let c = 0; c < classes; c++) {
    const text = shots.hasText[c] ? Array.from(shots.text.subarray(c * d, (c + 1) * d)) : image[c];
    const row = shots.hasText[c] && present[c] ? text.map((t, j) => alpha * t + (1 - alpha) * image[c][j]) : text;
    const usable = shots.hasText[c] || present[c];
    normalized(row).forEach((v, j) => { weights[c * d + j] = usable ? scale * v : 0; });
    bias[c] = usable ? 0 : -Infinity;
  }
  return { weights, bias, shots: null, shotLabels: null, beta: 0, cacheWeight: 0, d };
}

/** Cholesky solve of the symmetric positive definite (d, d) `a` against each row of `rhs` (rows of length d). */
function solveRows(a, d, rhs) {
  const l = new Float64Array(d * d);
  for (let i = 0; i < d; i++) {
    for (let j = 0; j <= i; j++) {
      let s = a[i * d + j];
      for (let k = 0; k < j; k++) s -= l[i * d + k] * l[j * d + k];
      l[i * d + j] = i === j ? Math.sqrt(s) : s / l[j * d + j];
    }
  }
  return rhs.map((b) => {
    const y = new Float64Array(d), x = new Float64Array(d);
    for (let i = 0; i < d; i++) {
      let s = b[i];
      for (let k = 0; k < i; k++) s -= l[i * d + k] * y[k];
      y[i] = s / l[i * d + i];
    }
    for (let i = d - 1; i >= 0; i--) {
      let s = y[i];
      for (let k = i + 1; k < d; k++) s -= l[k * d + i] * x[k];
      x[i] = s / l[i * d + i];
    }
    return x;
  });
}

function fitLda(shots, scale, gamma, shrinkage) {
  const head = fitMix(shots, scale, 1.0);
  if (gamma === 0) return head;
  const { d, classes, embeddings, labels } = shots;
  const counts = new Array(classes).fill(0);
  const means = Array.from({ length: classes }, () => new Float64Array(d));
  labels.forEach((c, i) => { counts[c]++; for (let j = 0; j < d; j++) means[c][j] += embeddings[i * d + j]; });
  means.forEach((m, c) => { if (counts[c]) for (let j = 0; j < d; j++) m[j] /= counts[c]; });
  const present = counts.map((n) => n > 0);
  const scatter = new Float64Array(d * d);
  labels.forEach((c, i) => {
    const v = Array.from({ length: d }, (_, j) => embeddings[i * d + j] - means[c][j]);
    for (let a = 0; a < d; a++) for (let b = 0; b < d; b++) scatter[a * d + b] += v[a] * v[b];
  });
  const dof = Math.max(labels.length - present.filter(Boolean).length, 1);
  let trace = 0;
  for (let a = 0; a < d; a++) trace += scatter[a * d + a] / dof;
  const level = Math.max(trace / d, 1e-6);
  const covariance = scatter.map((v, k) => (1 - shrinkage) * v / dof + (k % (d + 1) === 0 ? shrinkage * level : 0));
  const w = solveRows(covariance, d, means.map((m) => Array.from(m)));
  let unit = 1e-6;
  for (let c = 0; c < classes; c++) {
    if (!present[c]) continue;
    for (let k = 0; k < classes; k++) if (present[k]) unit = Math.max(unit, Math.abs(dot(w[c], 0, means[k], 0, d)));
  }
  const weights = Float32Array.from(head.weights), bias = Float32Array.from(head.bias);
  for (let c = 0; c < classes; c++) {
    if (!present[c]) continue;
    const b = -0.5 * dot(w[c], 0, means[c], 0, d);
    for (let j = 0; j < d; j++) weights[c * d + j] += gamma * scale * w[c][j] / unit;
    bias[c] += gamma * scale * b / unit;
  }
  return { ...head, weights, bias };
}

/** A head from a method and its settings (an index's or a golden file's). */
export function fitHead(method, shots, scale, settings) {
  if (method === "mix") return fitMix(shots, scale, settings.alpha);
  if (method === "tip") {
    return { ...fitMix(shots, scale, 1.0), shots: shots.embeddings, shotLabels: shots.labels, beta: settings.beta,
      cacheWeight: settings.weight * scale };
  }
  if (method === "lda") return fitLda(shots, scale, settings.gamma, settings.shrinkage);
  throw new Error(`unknown few-shot method ${method}: mix, tip or lda`);
}

/** Embeddings (n, d) -> logits (n, C) of a head. */
export function headLogits(head, embeddings) {
  const d = head.d, classes = head.bias.length, n = embeddings.length / d;
  const out = new Float64Array(n * classes);
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < classes; c++) out[i * classes + c] = dot(head.weights, c * d, embeddings, i * d, d) + head.bias[c];
    if (head.cacheWeight && head.shots) {
      head.shotLabels.forEach((c, s) => {
        out[i * classes + c] += head.cacheWeight * Math.exp(-head.beta * (1 - dot(embeddings, i * d, head.shots, s * d, d)));
      });
    }
  }
  return out;
}

/** mix or tip, whichever leave-one-out on the shots likes best (ties: nearest zero-shot, then mix). */
export function chooseHead(shots, scale) {
  const classes = shots.classes, d = shots.d;
  // As Python: only a shot whose class keeps another shot when it is left out can be held out.
  const counts = new Array(classes).fill(0);
  shots.labels.forEach((c) => counts[c]++);
  const heldOut = shots.labels.map((c, i) => (counts[c] > 1 ? i : -1)).filter((i) => i >= 0);
  if (!heldOut.length) return { method: "mix", settings: { alpha: 1.0 }, loo: 0, zeroShot: 0 };
  const accuracy = (logitsOf) => {
    let right = 0;
    for (const i of heldOut) {
      const row = logitsOf(i);
      let best = 0;
      for (let c = 1; c < classes; c++) if (row[c] > row[best]) best = c;
      if (best === shots.labels[i]) right++;
    }
    return right / heldOut.length;
  };
  const one = (i) => shots.embeddings.subarray(i * d, (i + 1) * d);
  const base = [];
  for (const i of heldOut) base[i] = headLogits(fitMix(shots, scale, 1.0, i), one(i));
  const zeroShot = accuracy((i) => base[i]);
  let best = { method: "mix", settings: { alpha: 1.0 }, loo: zeroShot };
  for (const alpha of MIX_ALPHAS.slice(1)) {
    const loo = accuracy((i) => headLogits(fitMix(shots, scale, alpha, i), one(i)));
    if (loo > best.loo) best = { method: "mix", settings: { alpha }, loo };
  }
  for (const weight of TIP_WEIGHTS.slice(1)) {
    for (const beta of TIP_BETAS) {
      const loo = accuracy((i) => {
        const row = Float64Array.from(base[i]);
        shots.labels.forEach((c, s) => {
          if (s !== i) row[c] += weight * scale * Math.exp(-beta * (1 - dot(shots.embeddings, i * d, shots.embeddings, s * d, d)));
        });
        return row;
      });
      if (loo > best.loo) best = { method: "tip", settings: { beta, weight }, loo };
    }
  }
  return { ...best, zeroShot };
}
