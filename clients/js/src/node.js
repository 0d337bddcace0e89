// The client in Node: bundle files from disk, onnxruntime-node, PNG and JPEG decoded in JavaScript.
import { readFile } from "node:fs/promises";
import path from "node:path";
import * as ort from "onnxruntime-node";
import jpeg from "jpeg-js";
import { PNG } from "pngjs";
import { BundleError, ClipBundle } from "./core.js";

export * from "./core.js";

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47];

/** PNG or JPEG bytes -> {data, width, height, channels: 4} (RGBA). EXIF orientation is not applied. */
export function decodeImage(bytes, name = "<bytes>") {
  const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  try {
    if (PNG_SIGNATURE.every((b, i) => buffer[i] === b)) {
      // 16-bit PNGs are scaled to 8 bits, as Pillow's RGB conversion does.
      const png = PNG.sync.read(buffer);
      return { data: png.data, width: png.width, height: png.height, channels: 4 };
    }
    if (buffer[0] === 0xff && buffer[1] === 0xd8) {
      const image = jpeg.decode(buffer, { useTArray: true, formatAsRGBA: true, maxMemoryUsageInMB: 512 });
      return { data: image.data, width: image.width, height: image.height, channels: 4 };
    }
  } catch (error) {
    throw new BundleError(`image ${name} is truncated or corrupt (${error.message}): re-encode or drop it`);
  }
  throw new BundleError(`image ${name} is not a PNG or JPEG file: convert it (the Node client decodes those two)`);
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
