// The client in Node: bundle files from disk, onnxruntime-node, images decoded by sharp (libvips with
// libjpeg-turbo and libpng: the decoders Pillow uses, so the pixels are Python's to the bit).
import { readFile } from "node:fs/promises";
import path from "node:path";
import * as ort from "onnxruntime-node";
import sharp from "sharp";
import { BundleError, ClipBundle } from "./core.js";

export * from "./core.js";

const MAX_PIXELS = 90_000_000; // the Python runtime's decompression-bomb bound

/** Image file bytes (PNG, JPEG, WebP, GIF, TIFF, AVIF) -> {data: RGBA bytes, width, height, channels: 4},
 * upright by its EXIF orientation, without colour management (as Pillow: embedded ICC profiles are ignored). */
export async function decodeImage(bytes, name = "<bytes>") {
  try {
    const { data, info } = await sharp(bytes, { ignoreIcc: true, limitInputPixels: MAX_PIXELS, pages: 1 })
      .rotate().toColourspace("srgb").ensureAlpha().raw({ depth: "uchar" }).toBuffer({ resolveWithObject: true });
    return { data, width: info.width, height: info.height, channels: 4 };
  } catch (error) {
    const why = /pixel limit/.test(error.message) ? `has more than ${MAX_PIXELS} pixels: downscale it first`
      : `is not a readable image file (${error.message}): pass a PNG, JPEG, WebP, GIF or TIFF`;
    throw new BundleError(`image ${name} ${why}`);
  }
}

/**
 * Open an ONNX bundle directory.
 * @param {string} dir the directory `clipping-edge export --target onnx` wrote
 * @param {object} [sessionOptions] onnxruntime-node session options (e.g. {executionProviders: ["cpu"]})
 * @param {string} [parts] "towers", "classifier" (the app-ready classifier of `export --labels`) or "all"
 */
export async function loadBundle(dir, sessionOptions = {}, parts = "towers") {
  const root = path.resolve(dir);
  const readBundleFile = async (name) => {
    const file = path.resolve(root, name);
    if (!file.startsWith(root + path.sep)) throw new BundleError(`manifest path ${name} points outside the bundle ${root}: the manifest is corrupt or hostile`);
    try {
      return new Uint8Array(await readFile(file));
    } catch (error) {
      if (error.code === "ENOENT") throw new BundleError(`bundle file ${file} is missing: pass the directory written by \`clipping-edge export\`, copied whole`);
      throw error;
    }
  };
  return ClipBundle.open({ readFile: readBundleFile, ort, decodeImage, sessionOptions }, { parts });
}
