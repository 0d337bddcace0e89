// The page in a real browser: headless Chromium loads a bundle, classifies its golden images and verifies
// its golden vectors with onnxruntime-web. The bundle comes from CLIPPING_EDGE_BROWSER_BUNDLE (set by
// tests/test_js_client.py); a screenshot goes to CLIPPING_EDGE_ARTIFACTS.
import assert from "node:assert/strict";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { serve } from "../scripts/serve.js";

// One or more bundle folders, joined with the path delimiter (":" here).
const bundleDirs = (process.env.CLIPPING_EDGE_BROWSER_BUNDLE ?? "").split(path.delimiter).filter(Boolean);
const chromium = process.env.CHROMIUM ?? "/usr/bin/chromium";
const PAGE_TIMEOUT_MS = Number(process.env.CLIPPING_EDGE_BROWSER_TIMEOUT_MS ?? 200_000);
const skip = !bundleDirs.length ? "set CLIPPING_EDGE_BROWSER_BUNDLE to an ONNX bundle folder (tests/test_js_client.py does)"
  : !existsSync(chromium) ? `no Chromium at ${chromium}: install it (apt-get install chromium) or set CHROMIUM` : false;

const USER_LABELS = "my%20label,another";  // what a user typed: no check may replace it

async function runPage(bundleDir, auto, screenshot) {
  const { chromium: launcher } = await import("playwright-core");
  const server = await serve(bundleDir);
  // Flags for a machine without a network or a GPU: no background connections, no sandbox as root.
  const browser = await launcher.launch({
    executablePath: chromium,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync",
      // A synthetic camera (Chromium's test pattern), granted without a prompt.
      "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1000, height: 900 } });
    const messages = [];
    page.on("console", (m) => messages.push(`${m.type()}: ${m.text()}`));
    page.on("pageerror", (e) => messages.push(`pageerror: ${e.message}`));
    page.on("response", (r) => r.status() >= 400 && messages.push(`HTTP ${r.status()} ${r.url()}`));
    const { port } = server.address();
    await page.goto(`http://127.0.0.1:${port}/web/index.html?bundle=/bundle/&auto=${auto}&labels=${USER_LABELS}`);
    const finished = await page.waitForFunction(() => window.clippingEdge?.report || window.clippingEdge?.error,
      null, { timeout: PAGE_TIMEOUT_MS, polling: 200 }).then(() => true, () => false);
    const result = await page.evaluate(() => ({ ...window.clippingEdge, isolated: self.crossOriginIsolated,
      typedLabels: document.getElementById("labels").value }));
    const artifacts = process.env.CLIPPING_EDGE_ARTIFACTS;
    if (artifacts) {
      mkdirSync(artifacts, { recursive: true });
      await page.screenshot({ path: path.join(artifacts, `${screenshot}.png`), fullPage: true });
      writeFileSync(path.join(artifacts, `${screenshot}.json`), JSON.stringify(result, null, 2));
    }
    assert.ok(finished, `the page did not finish (state ${JSON.stringify(result)}):\n${messages.join("\n")}`);
    assert.equal(result.error, undefined, `the page failed: ${result.error}\n${messages.join("\n")}`);
    console.log(`browser (${auto}): first classification ${result.firstResultMs.toFixed(0)} ms after navigation, ` +
      `${result.imageMs.toFixed(1)} ms per image, cross-origin isolated ${result.isolated}`);
    assert.deepEqual(result.top1, result.expectedTop1, "the page's top-1 differs from Python's");
    assert.equal(result.typedLabels, "my label\nanother", "the page replaced the labels the user typed");
    if (auto === "golden") {
      // The camera path: frames from the fake camera are preprocessed and classified continuously.
      await page.click("#camera");
      await page.waitForFunction(() => window.clippingEdge.cameraFrames >= 2, null, { timeout: 60_000, polling: 200 });
      const camera = await page.evaluate(() => window.clippingEdge);
      assert.ok(result.expectedTop1.length && camera.cameraTop1, JSON.stringify(camera));
    }
    return result;
  } finally {
    await browser.close();
    server.close();
  }
}

for (const [i, bundleDir] of bundleDirs.entries()) {
  test(`the page classifies the golden images of ${path.basename(bundleDir)} as Python does, in headless Chromium`,
    { skip, timeout: 240_000 }, async () => {
      const result = await runPage(bundleDir, "golden", i === 0 ? "browser" : `browser-${path.basename(bundleDir)}`);
      console.log(`browser ${path.basename(bundleDir)}: image cosine min ${result.report.image_cosine_min.toFixed(6)}, ` +
        `text ${result.report.text_cosine_min.toFixed(6)}, score max abs ${result.report.score_max_abs.toExponential(2)}`);
      assert.deepEqual(result.report.failures, [], `golden vectors: ${JSON.stringify(result.report)}`);
      if (result.fewshot) {  // a class taught in the page from the golden shots' photos answers for one of them
        console.log(`browser few-shot: ${JSON.stringify(result.fewshot)}, top-1 ${result.fewshotTop1}`);
        assert.equal(result.fewshotTop1, "taught from photos", JSON.stringify(result.fewshot));
      }
    });
}
if (!bundleDirs.length) test("the page classifies the golden images as Python does, in headless Chromium", { skip }, () => {});

// A bundle exported with --labels set to its golden labels: its classifier must rank as the two towers did.
const classifierBundle = process.env.CLIPPING_EDGE_BROWSER_CLASSIFIER_BUNDLE;
test("the page runs the app-ready classifier alone", { skip: skip || (!classifierBundle && "set CLIPPING_EDGE_BROWSER_CLASSIFIER_BUNDLE"), timeout: 240_000 },
  async () => { await runPage(classifierBundle, "classifier", "browser-classifier"); });
