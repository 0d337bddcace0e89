// The client in a browser: bundle files fetched from a URL or picked from disk, onnxruntime-web (WebAssembly),
// images decoded by the browser itself.
import * as ort from "onnxruntime-web";
import { BundleError, ClipBundle } from "./core.js";

export * from "./core.js";
export { ort };

const MAX_PIXELS = 90_000_000; // the Python runtime's decompression-bomb bound

/** Image file bytes -> {data: RGBA bytes, width, height, channels: 4}, as the file stores them: no colour
 * management and no premultiplied alpha, so the pixels are Pillow's. EXIF orientation is applied. */
export async function decodeImage(bytes, name = "<bytes>") {
  let bitmap;
  try {
    bitmap = await createImageBitmap(new Blob([bytes]), { colorSpaceConversion: "none", premultiplyAlpha: "none" });
  } catch {
    throw new BundleError(`image ${name} is not an image this browser decodes: pass a PNG, JPEG, WebP, BMP or GIF`);
  }
  if (bitmap.width * bitmap.height > MAX_PIXELS) throw new BundleError(`image ${name} is ${bitmap.width}x${bitmap.height} pixels, over the ${MAX_PIXELS} pixel limit: downscale it first`);
  return bitmapPixels(bitmap);
}

/** A bitmap, video frame or canvas -> RGBA pixels. */
export function bitmapPixels(source, width = source.width, height = source.height) {
  const canvas = new OffscreenCanvas(width, height);
  const context = canvas.getContext("2d", { willReadFrequently: true, colorSpace: "srgb" });
  context.drawImage(source, 0, 0, width, height);
  const { data } = context.getImageData(0, 0, width, height, { colorSpace: "srgb" });
  return { data, width, height, channels: 4 };
}

function configureWasm(options) {
  // The .wasm files sit next to onnxruntime-web's module unless the page says otherwise.
  if (options.wasmPaths) ort.env.wasm.wasmPaths = options.wasmPaths;
  if (options.numThreads) ort.env.wasm.numThreads = options.numThreads;
}

/** Open a bundle served at `baseUrl` (a folder URL holding manifest.json). */
export async function loadBundleFromUrl(baseUrl, options = {}) {
  configureWasm(options);
  const base = new URL(baseUrl.endsWith("/") ? baseUrl : `${baseUrl}/`, globalThis.location?.href);
  const readFile = async (name) => {
    const response = await fetch(new URL(name, base));
    if (!response.ok) throw new BundleError(`bundle file ${name} could not be fetched (HTTP ${response.status}): serve the whole bundle folder`);
    return new Uint8Array(await response.arrayBuffer());
  };
  return ClipBundle.open({ readFile, ort, decodeImage, sessionOptions: options.sessionOptions ?? { executionProviders: ["wasm"] } },
    { parts: options.parts });
}

/** Open a bundle from the files of a picked folder (<input type="file" webkitdirectory>). */
export async function loadBundleFromFiles(fileList, options = {}) {
  configureWasm(options);
  const files = new Map();
  for (const file of fileList) {
    // webkitRelativePath is "<picked folder>/<path inside it>".
    const relative = (file.webkitRelativePath || file.name).split("/").slice(1).join("/") || file.name;
    files.set(relative, file);
  }
  if (!files.has("manifest.json")) throw new BundleError("the chosen folder has no manifest.json: choose the folder `clipping-edge export` wrote");
  const readFile = async (name) => {
    const file = files.get(name);
    if (!file) throw new BundleError(`the chosen folder lacks ${name}: choose the whole bundle folder`);
    return new Uint8Array(await file.arrayBuffer());
  };
  return ClipBundle.open({ readFile, ort, decodeImage, sessionOptions: options.sessionOptions ?? { executionProviders: ["wasm"] } },
    { parts: options.parts });
}
