// Preprocessing and tokenizing against Python on cases Python wrote (CLIPPING_EDGE_PARITY_CASES, a folder
// with cases.json; tests/test_js_client.py writes it): image files of every size, aspect and pixel mode
// Pillow reads, with the pixels Python feeds the image tower, and texts with the ids Python gives them.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { decodeImage, preprocess, TextTokenizer } from "../src/node.js";

const folder = process.env.CLIPPING_EDGE_PARITY_CASES;
const cases = folder ? JSON.parse(readFileSync(path.join(folder, "cases.json"), "utf8")) : { images: [], tokenizers: [] };
const skip = folder ? false : "set CLIPPING_EDGE_PARITY_CASES (tests/test_js_client.py does)";

test("preprocessing gives Python's pixels", { skip }, async () => {
  for (const c of cases.images) {
    const bytes = readFileSync(path.join(folder, c.file));
    const pixels = preprocess(await decodeImage(new Uint8Array(bytes), c.file), c.size);
    const expected = new Float32Array(readFileSync(path.join(folder, c.expected)).buffer.slice(0));
    assert.equal(pixels.length, expected.length, c.file);
    let worst = 0;
    pixels.forEach((v, i) => { worst = Math.max(worst, Math.abs(v - expected[i])); });
    assert.ok(worst <= c.max_abs, `${c.file} (${c.about}): max |pixel difference| ${worst} > ${c.max_abs}`);
  }
  assert.ok(cases.images.length > 0);
});

test("tokenizing gives Python's ids", { skip }, () => {
  for (const t of cases.tokenizers) {
    const tokenizer = new TextTokenizer(JSON.parse(readFileSync(path.join(folder, t.file), "utf8")), t.context_length);
    t.texts.forEach((text, i) => assert.deepEqual(Array.from(tokenizer.encodeOne(text)), t.ids[i], `${t.file}: ${JSON.stringify(text)}`));
  }
  assert.ok(cases.tokenizers.length > 0);
});
