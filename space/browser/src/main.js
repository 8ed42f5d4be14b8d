// The page: a drawing canvas and an upload, read by mnist-vit through transformers.js, top 3 updated live.
//
// The model is the Hub repo's plain ViT root, run from its onnx/ folder on ONNX Runtime's WASM backend.
// ?model=OWNER/NAME picks a Hub repo (default: the Space variable MODEL_REPO); ?local_model=NAME loads the
// folder models/NAME/ served beside the page instead, with no network.
import { env, pipeline, RawImage } from "@huggingface/transformers";

import { prepareDigit, SIZE } from "./mnist.js";

const INK_WIDTH = 20; // px on the 280 px canvas: MNIST's strokes are about 2 of its 28 px wide
const NOT_A_PICTURE = "That file is not a picture the browser can read: choose a PNG, JPEG, WebP, GIF or BMP of a digit.";

const canvas = document.querySelector("#canvas canvas");
const context = canvas.getContext("2d", { willReadFrequently: true });
const seen = document.querySelector("#seen").getContext("2d");
const top3 = document.querySelector("#top3");
const prepare = document.querySelector("#prepare");
const message = document.querySelector("#message");
const status = document.querySelector("#status");

// ONNX Runtime's WASM files are bundled beside the page (build.mjs), not fetched from a CDN.
env.backends.onnx.wasm.wasmPaths = {
  mjs: new URL("ort/ort-wasm-simd-threaded.mjs", location.href).href,
  wasm: new URL("ort/ort-wasm-simd-threaded.wasm", location.href).href,
};

function chosenModel() {
  const parameters = new URLSearchParams(location.search);
  const local = parameters.get("local_model");
  if (local) {
    Object.assign(env, { allowLocalModels: true, allowRemoteModels: false, localModelPath: "models/" });
    return local;
  }
  return parameters.get("model") ?? window.huggingface?.variables?.MODEL_REPO;
}

async function loadClassifier() {
  const model = chosenModel();
  if (!model) throw new Error("No model named: open the page with ?model=OWNER/NAME or set the Space variable MODEL_REPO.");
  // fp32: for a model this small it runs faster in the browser than the 8-bit file
  const classifier = await pipeline("image-classification", model, { dtype: "fp32", device: "wasm" });
  status.textContent = `Model: ${model}`;
  return classifier;
}

const classifierReady = loadClassifier().catch((error) => {
  status.textContent = `The model could not be loaded: ${error.message}`;
  throw error;
});

// --- reading: the latest picture wins; pictures that come while one is read are skipped ---------------

let latest = null; // {imageData, version} waiting to be read
let version = 0; // bumped by every new picture and by Clear
let reading = false;
let frameRequested = false; // a canvas read is due at the next animation frame

/** aria-busy on the top 3 while a picture is due or being read: screen readers wait, and so can tests. */
function markBusy() {
  top3.ariaBusy = String(reading || frameRequested);
}

function read(imageData) {
  latest = { imageData, version: ++version };
  if (!reading) readLatest();
}

async function readLatest() {
  reading = true;
  markBusy();
  try {
    const classifier = await classifierReady;
    while (latest) {
      const { imageData, version: picture } = latest;
      latest = null;
      const image = toModelInput(imageData);
      const results = await classifier(image, { top_k: 3 });
      if (picture === version) show(image, results);
    }
  } finally {
    reading = false;
    markBusy();
  }
}

function toModelInput(imageData) {
  if (prepare.checked) return new RawImage(prepareDigit(imageData), SIZE, SIZE, 3);
  return new RawImage(imageData.data, imageData.width, imageData.height, 4); // the stock processor resizes it
}

function show(image, results) {
  seen.drawImage(image.toCanvas(), 0, 0, SIZE, SIZE);
  // data-testid: the same hook as the Gradio demo's label, so tests/app_harness.py drives both pages
  top3.replaceChildren(
    ...results.map(({ label, score }, rank) => {
      const item = document.createElement("li");
      const name = Object.assign(document.createElement("span"), { textContent: label });
      if (rank === 0) name.dataset.testid = "label-output-value";
      item.append(name, ` ${(score * 100).toFixed(1)}%`);
      return item;
    }),
  );
}

function clearAll() {
  version++;
  latest = null;
  context.fillStyle = "#000";
  context.fillRect(0, 0, canvas.width, canvas.height);
  seen.clearRect(0, 0, SIZE, SIZE);
  top3.replaceChildren();
  message.textContent = "";
}

// --- drawing: pointer events cover the mouse, touch and pens ------------------------------------------

let lastPoint = null;

function canvasPoint(event) {
  const box = canvas.getBoundingClientRect();
  return [((event.clientX - box.left) * canvas.width) / box.width, ((event.clientY - box.top) * canvas.height) / box.height];
}

function readCanvasNextFrame() {
  if (frameRequested) return;
  frameRequested = true;
  markBusy();
  requestAnimationFrame(() => {
    frameRequested = false;
    read(context.getImageData(0, 0, canvas.width, canvas.height));
  });
}

canvas.addEventListener("pointerdown", (event) => {
  canvas.setPointerCapture(event.pointerId);
  message.textContent = "";
  lastPoint = canvasPoint(event);
  strokeTo(lastPoint);
});
canvas.addEventListener("pointermove", (event) => {
  if (lastPoint) strokeTo(canvasPoint(event));
});
for (const end of ["pointerup", "pointercancel"]) canvas.addEventListener(end, () => (lastPoint = null));

function strokeTo(point) {
  Object.assign(context, { strokeStyle: "#fff", lineWidth: INK_WIDTH, lineCap: "round", lineJoin: "round" });
  context.beginPath();
  context.moveTo(...lastPoint);
  context.lineTo(...point);
  context.stroke();
  lastPoint = point;
  readCanvasNextFrame();
}

// --- uploads -----------------------------------------------------------------------------------------

const UPLOAD_SIDE = 512; // px: larger photos are scaled down first, which the preparation would do anyway

async function readUpload(file) {
  let bitmap;
  try {
    bitmap = await createImageBitmap(file);
  } catch {
    clearAll();
    message.textContent = NOT_A_PICTURE;
    return;
  }
  clearAll();
  const scale = Math.min(1, UPLOAD_SIDE / Math.max(bitmap.width, bitmap.height));
  const [width, height] = [Math.max(1, Math.round(bitmap.width * scale)), Math.max(1, Math.round(bitmap.height * scale))];
  const scratch = new OffscreenCanvas(width, height).getContext("2d", { willReadFrequently: true });
  scratch.drawImage(bitmap, 0, 0, width, height);
  bitmap.close();
  read(scratch.getImageData(0, 0, width, height));
}

document.querySelector("#upload").addEventListener("change", (event) => {
  const [file] = event.target.files;
  event.target.value = ""; // the same file chosen again reads again
  if (file) readUpload(file);
});
document.querySelector("#clear").addEventListener("click", clearAll);
clearAll();
