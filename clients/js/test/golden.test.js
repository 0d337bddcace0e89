// Node against Python: every bundle in CLIPPING_EDGE_BUNDLES (folders joined with the path delimiter) must
// reproduce its golden vectors (cosine >= 0.9999 per tower at fp32, the bundle's own tolerances otherwise,
// and the same top-1 on every golden image); a tampered tower or golden file must be refused.
import assert from "node:assert/strict";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { test } from "node:test";
import { BundleError, loadBundle, verifyGolden } from "../src/node.js";

const bundles = (process.env.CLIPPING_EDGE_BUNDLES ?? "").split(path.delimiter).filter(Boolean);
const skip = bundles.length ? false : "set CLIPPING_EDGE_BUNDLES to ONNX bundle folders (tests/test_js_client.py does)";

for (const dir of bundles) {
  test(`golden vectors of ${dir}`, async () => {
    const bundle = await loadBundle(dir);
    const report = await verifyGolden(bundle);
    const golden = JSON.parse(readFileSync(path.join(dir, bundle.manifest.golden), "utf8"));
    console.log(`${path.basename(dir)} (${bundle.manifest.precision}): image cosine min ${report.image_cosine_min.toFixed(6)}, ` +
      `text ${report.text_cosine_min.toFixed(6)}, pixels max abs ${report.pixels_max_abs}, score max abs ${report.score_max_abs.toExponential(2)}`);
    assert.deepEqual(report.failures, [], JSON.stringify(report));
    assert.deepEqual(report.top1, golden.expected_top_k.map((row) => row[0].label));
    if (golden.fewshot) {  // each few-shot head (mix, tip, lda) re-fitted here on the golden shots
      assert.ok(report.fewshot_score_max_abs <= golden.tolerances.score_max_abs, JSON.stringify(report));
      console.log(`  few-shot heads ${Object.keys(golden.fewshot.heads).join(", ")}: score max abs ${report.fewshot_score_max_abs.toExponential(2)}`);
    }
    if (bundle.manifest.precision === "fp32") {
      assert.ok(report.image_cosine_min >= 0.9999 && report.text_cosine_min >= 0.9999, JSON.stringify(report));
    }
  });
}

test("a tampered golden image or tower is refused", { skip }, async () => {
  const copy = mkdtempSync(path.join(tmpdir(), "tampered-"));
  try {
    cpSync(bundles[0], copy, { recursive: true });
    const manifest = JSON.parse(readFileSync(path.join(copy, "manifest.json"), "utf8"));
    const golden = JSON.parse(readFileSync(path.join(copy, manifest.golden), "utf8"));
    const image = path.join(copy, path.dirname(manifest.golden), golden.images[0]);
    const bytes = readFileSync(image);
    bytes[bytes.length - 1] ^= 0xff;
    writeFileSync(image, bytes);
    await assert.rejects(verifyGolden(await loadBundle(copy)), (e) => e instanceof BundleError && /golden\/ does not match the checksum/.test(e.message));
    const tower = path.join(copy, manifest.image_tower);
    const model = readFileSync(tower);
    model[model.length >> 1] ^= 0x01;
    writeFileSync(tower, model);
    await assert.rejects(loadBundle(copy), (e) => e instanceof BundleError && /image\.onnx does not match the checksum/.test(e.message));
  } finally {
    rmSync(copy, { recursive: true, force: true });
  }
});

test("a bundle for another target is refused with the fix", { skip }, async () => {
  const copy = mkdtempSync(path.join(tmpdir(), "target-"));
  try {
    cpSync(bundles[0], copy, { recursive: true });
    const file = path.join(copy, "manifest.json");
    writeFileSync(file, JSON.stringify({ ...JSON.parse(readFileSync(file, "utf8")), target: "tflite" }));
    await assert.rejects(loadBundle(copy), /export with --target onnx/);
  } finally {
    rmSync(copy, { recursive: true, force: true });
  }
});
