// The bundle's image preprocessing, as the Python runtime does it (clipping_edge/preprocess.py): RGB with
// transparency over white, shorter side resized to the bundle's size with Pillow's bicubic (or bilinear)
// filter and centre crop, or both sides squashed to the size, scaled to [0, 1], channels first. The sizes
// are torchvision's (longer side truncated). Mean/std live inside the image graph.
//
// Pillow's resampling is reproduced step for step (a separable convolution whose kernel widens
// with the downscale factor, fixed-point weights, a rounding to 8 bits between the two passes), because
// a browser's canvas scaling or any other resizer gives pixels several levels apart: the drift that makes
// ports of CLIP disagree with Python. Decoding is left to the caller (pngjs/jpeg-js in Node, the browser's
// own decoder); any decoder hands over an RGBA or RGB byte array.

const PRECISION_BITS = 32 - 8 - 2; // Pillow's fixed-point weights for 8-bit images

function bicubic(x) {
  const a = -0.5;
  x = Math.abs(x);
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

function bilinear(x) {
  x = Math.abs(x);
  return x < 1.0 ? 1.0 - x : 0.0;
}

// Up to this aspect ratio the whole image is resized and then cropped (clipping_edge/preprocess.py).
const MAX_WHOLE_ASPECT = 4;

// Pillow's filters: kernel and support (in source pixels at scale 1).
const FILTERS = { bicubic: { kernel: bicubic, support: 2.0 }, bilinear: { kernel: bilinear, support: 1.0 } };

/** Python's round(): halves go to the even neighbour (Math.round sends them up). */
export function pyRound(x) {
  const floor = Math.floor(x);
  const diff = x - floor;
  if (diff > 0.5) return floor + 1;
  if (diff < 0.5) return floor;
  return floor % 2 === 0 ? floor : floor + 1;
}

/** Per output pixel: the first input pixel, how many it reads and their fixed-point weights. */
function coefficients(inSize, in0, in1, outSize, filter) {
  // Pillow passes the box as C floats: single precision, and so is their difference.
  in0 = Math.fround(in0);
  in1 = Math.fround(in1);
  const scale = Math.fround(in1 - in0) / outSize;
  const filterScale = Math.max(scale, 1.0);
  const support = filter.support * filterScale;
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2);
  const weights = new Int32Array(outSize * ksize);
  const row = new Float64Array(ksize);
  const ss = 1.0 / filterScale;
  for (let xx = 0; xx < outSize; xx++) {
    const center = in0 + (xx + 0.5) * scale;
    // Truncation toward zero, as C's (int) cast does.
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const xmax = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
    let total = 0.0;
    for (let x = 0; x < xmax; x++) {
      row[x] = filter.kernel((x + xmin - center + 0.5) * ss);
      total += row[x];
    }
    for (let x = 0; x < xmax; x++) {
      const w = total !== 0.0 ? row[x] / total : row[x];
      weights[xx * ksize + x] = Math.trunc(w < 0 ? -0.5 + w * (1 << PRECISION_BITS) : 0.5 + w * (1 << PRECISION_BITS));
    }
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  return { ksize, bounds, weights };
}

function clip8(sum) {
  const v = Math.floor(sum / (1 << PRECISION_BITS));
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

/** One convolution pass over an RGB byte image (3 bytes per pixel) along x (horizontal) or y. */
function resamplePass(src, width, height, coeffs, outSize, horizontal, firstRow = 0, rows = height) {
  const { ksize, bounds, weights } = coeffs;
  const outW = horizontal ? outSize : width;
  const outH = horizontal ? rows : outSize;
  const out = new Uint8Array(outW * outH * 3);
  const half = 1 << (PRECISION_BITS - 1);
  for (let y = 0; y < outH; y++) {
    for (let x = 0; x < outW; x++) {
      const o = horizontal ? x : y;
      const start = bounds[o * 2];
      const count = bounds[o * 2 + 1];
      let r = half, g = half, b = half;
      for (let k = 0; k < count; k++) {
        const w = weights[o * ksize + k];
        const i = horizontal ? ((y + firstRow) * width + start + k) * 3 : ((start + k) * width + x) * 3;
        r += src[i] * w;
        g += src[i + 1] * w;
        b += src[i + 2] * w;
      }
      const j = (y * outW + x) * 3;
      out[j] = clip8(r);
      out[j + 1] = clip8(g);
      out[j + 2] = clip8(b);
    }
  }
  return out;
}

/** Pillow's (13+) Image.resize((outW, outH), BICUBIC or BILINEAR, box) on an RGB byte image. */
export function resize(rgb, width, height, outW, outH, box, interpolation = "bicubic") {
  const filter = FILTERS[interpolation];
  if (!filter) throw new Error(`unknown interpolation ${interpolation}: bicubic or bilinear`);
  const [x0, y0, x1, y1] = box.map(Math.fround);
  // An integer box of the output's size is a crop (Pillow's _resize).
  if (Number.isInteger(x0) && Number.isInteger(y0) && x1 - x0 === outW && y1 - y0 === outH) {
    const out = new Uint8Array(outW * outH * 3);
    for (let y = 0; y < outH; y++) out.set(rgb.subarray(((y + y0) * width + x0) * 3, ((y + y0) * width + x0 + outW) * 3), y * outW * 3);
    return out;
  }
  // Both conditions as Pillow writes them (the second compares the box with the output size).
  const needHorizontal = outW !== width || x0 !== 0 || x1 !== outW;
  const needVertical = outH !== height || y0 !== 0 || y1 !== outH;
  // Pillow 13 runs the vertical pass first when the height shrinks more than twice as much as the width;
  // the 8-bit rounding between the passes makes the order visible in the pixels.
  const horizontalFirst = !(height - outH > 0 && height - outH > (width - outW) * 2);
  const horiz = coefficients(width, x0, x1, outW, filter);
  const vert = coefficients(height, y0, y1, outH, filter);
  let image = rgb, w = width, h = height;
  if (horizontalFirst) {
    if (needHorizontal) {
      // Only the rows the vertical pass reads are resampled.
      const first = vert.bounds[0];
      const last = vert.bounds[outH * 2 - 2] + vert.bounds[outH * 2 - 1];
      for (let i = 0; i < outH; i++) vert.bounds[i * 2] -= first;
      image = resamplePass(image, w, h, horiz, outW, true, first, last - first);
      w = outW;
      h = last - first;
    }
    if (needVertical) image = resamplePass(image, w, h, vert, outH, false);
  } else {
    if (needVertical) {
      image = resamplePass(image, w, h, vert, outH, false);
      h = outH;
    }
    if (needHorizontal) image = resamplePass(image, w, h, horiz, outW, true);
  }
  return image === rgb ? Uint8Array.from(rgb) : image;
}

/** RGBA bytes -> RGB bytes, transparency composited over white with Pillow's integer arithmetic. */
export function rgbaOverWhite(rgba, pixels) {
  const rgb = new Uint8Array(pixels * 3);
  const bits = 7;
  for (let p = 0; p < pixels; p++) {
    const a = rgba[p * 4 + 3];
    for (let c = 0; c < 3; c++) {
      const s = rgba[p * 4 + c];
      if (a === 255) { rgb[p * 3 + c] = s; continue; }
      if (a === 0) { rgb[p * 3 + c] = 255; continue; }
      const outA255 = a * 255 + 255 * (255 - a);
      const coef1 = Math.floor((a * 255 * 255 * (1 << bits)) / outA255);
      const coef2 = 255 * (1 << bits) - coef1;
      const t = s * coef1 + 255 * coef2 + (0x80 << bits);
      rgb[p * 3 + c] = Math.floor((Math.floor(t / 256) + t) / 256) >> bits;
    }
  }
  return rgb;
}

/** The manifest's preprocessing: { size, resize: "shortest" | "squash", interpolation } (a bare size: bicubic, shortest). */
export function preprocessSpec(manifest) {
  const recorded = manifest.preprocess || {};
  return { size: manifest.image_size, resize: recorded.mode || "shortest", interpolation: recorded.interpolation || "bicubic" };
}

/**
 * A decoded image -> Float32Array (3, size, size) in [0, 1].
 * @param {{data: Uint8Array|Uint8ClampedArray, width: number, height: number, channels: 3|4}} image
 * @param {number|{size: number, resize?: string, interpolation?: string}} spec the size, or preprocessSpec(manifest)
 */
export function preprocess(image, spec) {
  const { size, resize: mode = "shortest", interpolation = "bicubic" } = typeof spec === "number" ? { size: spec } : spec;
  const { width: w, height: h, channels } = image;
  const rgb = channels === 4 ? rgbaOverWhite(image.data, w * h) : Uint8Array.from(image.data);
  let square;
  if (mode === "squash") {
    square = w === size && h === size ? rgb : resize(rgb, w, h, size, size, [0, 0, w, h], interpolation);
  } else {
    // torchvision's Resize: the longer side truncated
    const nw = w <= h ? size : Math.trunc((size * w) / h);
    const nh = w <= h ? Math.trunc((size * h) / w) : size;
    const left = pyRound((nw - size) / 2.0);
    const top = pyRound((nh - size) / 2.0);
    let whole = rgb, ww = w;
    // As Python: resize the whole image, then crop (torchvision's way), unless the aspect is extreme.
    if ((nw !== w || nh !== h) && Math.max(nw, nh) <= MAX_WHOLE_ASPECT * size) {
      whole = resize(rgb, w, h, nw, nh, [0, 0, w, h], interpolation);
      ww = nw;
    }
    if (whole !== rgb || (nw === w && nh === h)) {
      square = new Uint8Array(size * size * 3);
      for (let y = 0; y < size; y++) {
        square.set(whole.subarray(((y + top) * ww + left) * 3, ((y + top) * ww + left + size) * 3), y * size * 3);
      }
    } else {
      // The crop mapped back to source coordinates: one resize of the central square samples the same
      // pixels as resizing everything and then cropping.
      const sx = w / nw, sy = h / nh;
      square = resize(rgb, w, h, size, size, [left * sx, top * sy, (left + size) * sx, (top + size) * sy], interpolation);
    }
  }
  const out = new Float32Array(3 * size * size);
  const plane = size * size;
  for (let p = 0; p < plane; p++) {
    for (let c = 0; c < 3; c++) out[c * plane + p] = square[p * 3 + c] / 255;
  }
  return out;
}
