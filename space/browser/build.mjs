// Builds the page into dist/: the script bundled with transformers.js, the HTML, ONNX Runtime's WASM files.
import { copyFileSync, mkdirSync, rmSync } from "node:fs";

import { build } from "esbuild";

const ORT_FILES = ["ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm"]; // the smallest pair that runs

rmSync("dist", { recursive: true, force: true });
mkdirSync("dist/ort", { recursive: true });
await build({
  entryPoints: ["src/main.js"],
  bundle: true,
  format: "esm",
  platform: "browser",
  minify: true,
  outfile: "dist/main.js",
});
copyFileSync("index.html", "dist/index.html");
for (const name of ORT_FILES) copyFileSync(`node_modules/onnxruntime-web/dist/${name}`, `dist/ort/${name}`);
