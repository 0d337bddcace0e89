#!/usr/bin/env node
// clipping-edge-js: the Node client from a shell.
//   clipping-edge-js verify BUNDLE [--json]                  re-check the bundle's golden vectors here
//   clipping-edge-js classify BUNDLE --labels a,b,c IMAGE...  top-5 labels per image
//   clipping-edge-js classify BUNDLE IMAGE...                 with the bundle's app-ready classifier (export --labels)
import { readFile } from "node:fs/promises";
import { BundleError, checkLabels, loadBundle, verifyGolden } from "./node.js";

const USAGE = "usage: clipping-edge-js verify BUNDLE [--json] | clipping-edge-js classify BUNDLE [--labels a,b,c] [--top-k 5] IMAGE...";

/** The value after a flag: missing or another flag is a usage error naming the flag. */
function valueOf(rest, flag) {
  const at = rest.indexOf(flag);
  if (at < 0) return undefined;
  const value = rest[at + 1];
  if (value === undefined || value.startsWith("--")) throw new BundleError(`${flag} needs a value: ${USAGE}`);
  return value;
}

async function main(argv) {
  if (argv.includes("--help") || argv.includes("-h")) {
    console.log(USAGE);
    return 0;
  }
  const [command, bundleDir, ...rest] = argv;
  if (!bundleDir || !["verify", "classify"].includes(command)) throw new BundleError(USAGE);
  const labelsValue = valueOf(rest, "--labels");
  const kValue = valueOf(rest, "--top-k");
  const k = kValue === undefined ? 5 : Number(kValue);
  if (!Number.isInteger(k) || k < 1) throw new BundleError(`--top-k ${kValue} is not a whole number of at least 1`);
  // classify without --labels: the bundle's app-ready classifier (export --labels), and nothing else is loaded.
  const useClassifier = command === "classify" && labelsValue === undefined;
  const labels = useClassifier ? null : command === "classify" ? checkLabels(labelsValue.split(",")) : null;
  const bundle = await loadBundle(bundleDir, {}, useClassifier ? "classifier" : "towers");
  if (command === "verify") {
    const report = await verifyGolden(bundle);
    if (rest.includes("--json")) console.log(JSON.stringify(report, null, 2));
    else {
      console.log(`${bundleDir}: ${report.passed ? "golden vectors reproduced" : `FAILED (${report.failures.join(", ")})`}`);
      console.log(`  image cosine min ${report.image_cosine_min.toFixed(6)}, text ${report.text_cosine_min.toFixed(6)}, ` +
        `pixels max abs ${report.pixels_max_abs.toFixed(4)}, scores max abs ${report.score_max_abs.toExponential(2)}, ` +
        `token rows different ${report.token_id_rows_different}, top-k different ${JSON.stringify(report.top_k_different)}`);
    }
    return report.passed ? 0 : 1;
  }
  const flags = ["--labels", "--top-k"].map((f) => rest.indexOf(f)).filter((i) => i >= 0).flatMap((i) => [i, i + 1]);
  const images = rest.filter((_, i) => !flags.includes(i));
  if (!images.length) throw new BundleError("classify needs at least one image path");
  const prototypes = useClassifier ? null : await bundle.prototypes(labels);
  for (const image of images) {
    const bytes = await readFile(image);
    const predictions = useClassifier ? await bundle.classifyWithClassifier(await bundle.preprocess(bytes, image), k)
      : bundle.topK(await bundle.encodeImages([bytes]), prototypes, labels, k)[0];
    console.log(`${image}: ${predictions.map((p) => `${p.label} ${p.score.toFixed(3)}`).join(", ")}`);
  }
  return 0;
}

main(process.argv.slice(2)).then((code) => process.exit(code), (error) => {
  if (error instanceof BundleError || error.code === "ENOENT") {
    console.error(`error: ${error.message}`);
    process.exit(2);
  }
  throw error;
});
