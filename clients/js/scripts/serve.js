// A static file server for the page and a bundle, on localhost: clients/js at /, the bundle at /bundle/.
// Cross-origin isolation headers let onnxruntime-web use its threaded WebAssembly build.
import { createReadStream, statSync } from "node:fs";
import http from "node:http";
import path from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const TYPES = { ".html": "text/html", ".js": "text/javascript", ".mjs": "text/javascript", ".wasm": "application/wasm", ".json": "application/json" };

export function serve(bundleDir, port = 0) {
  const server = http.createServer((request, response) => {
    const url = decodeURIComponent(new URL(request.url, "http://localhost").pathname);
    const [base, rest] = url.startsWith("/bundle/") ? [path.resolve(bundleDir), url.slice("/bundle/".length)] : [ROOT, url.slice(1)];
    const file = path.resolve(base, rest);
    let stat;
    try {
      stat = statSync(file);
    } catch {
      stat = null;
    }
    if (!file.startsWith(base + path.sep) || !stat?.isFile()) {
      response.writeHead(404).end("not found");
      return;
    }
    response.writeHead(200, {
      "Content-Type": TYPES[path.extname(file)] ?? "application/octet-stream",
      "Content-Length": stat.size,
      "Cross-Origin-Opener-Policy": "same-origin",
      "Cross-Origin-Embedder-Policy": "require-corp",
    });
    createReadStream(file).pipe(response);
  });
  return new Promise((resolve) => server.listen(port, "127.0.0.1", () => resolve(server)));
}

// node scripts/serve.js BUNDLE [PORT]: serve the page and a bundle until Ctrl-C.
if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const [bundleDir, port = "8080"] = process.argv.slice(2);
  if (!bundleDir) {
    console.error("usage: node scripts/serve.js BUNDLE [PORT]");
    process.exit(2);
  }
  const server = await serve(bundleDir, Number(port));
  console.log(`http://127.0.0.1:${server.address().port}/web/index.html?bundle=/bundle/`);
}
