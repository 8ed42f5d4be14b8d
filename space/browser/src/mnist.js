// MNIST-style preparation of any picture of one digit, the steps of the model package's image processor
// (mnist_vit/image_processing_mnist_vit.py): grayscale -> ink white on black -> crop to the ink ->
// longer side scaled to 20 px -> centre of mass at the centre of 28x28.
// A picture here is {pixels: Float32Array of gray values in [0, 255], width, height}.

export const SIZE = 28; // what the model takes
const DIGIT_SIZE = 20; // MNIST's box for the digit's longer side
const LUMA = [0.299, 0.587, 0.114]; // ITU-R 601-2, as PIL's convert("L")

/** RGBA pixels (an ImageData) -> 28x28 RGB bytes of the digit, white on black, for a RawImage. */
export function prepareDigit(imageData) {
  const digit = placeOnCanvas(resizeLongerSide(cropToInk(makeInkWhiteOnBlack(toGray(imageData))), DIGIT_SIZE));
  const rgb = new Uint8ClampedArray(SIZE * SIZE * 3);
  digit.pixels.forEach((value, i) => rgb.fill(Math.round(value), 3 * i, 3 * i + 3));
  return rgb;
}

/** Gray by luma; transparent pixels show as background: white behind dark ink, black behind light ink. */
function toGray({ data, width, height }) {
  const pixels = new Float32Array(width * height);
  let weighted = 0;
  let opacity = 0;
  for (let i = 0; i < pixels.length; i++) {
    pixels[i] = LUMA[0] * data[4 * i] + LUMA[1] * data[4 * i + 1] + LUMA[2] * data[4 * i + 2];
    weighted += (pixels[i] * data[4 * i + 3]) / 255;
    opacity += data[4 * i + 3] / 255;
  }
  const background = weighted / Math.max(opacity, 1e-6) < 127.5 ? 255 : 0;
  for (let i = 0; i < pixels.length; i++) {
    const alpha = data[4 * i + 3] / 255;
    pixels[i] = pixels[i] * alpha + background * (1 - alpha);
  }
  return { pixels, width, height };
}

const largest = (values) => values.reduce((most, value) => Math.max(most, value), -Infinity);

function median(values) {
  const sorted = Float32Array.from(values).sort();
  const middle = sorted.length >> 1;
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

/** Ink = how far a pixel strays from the background (judged from the border), beyond 5 sigma of its noise. */
function makeInkWhiteOnBlack({ pixels, width, height }) {
  const border = [];
  for (let x = 0; x < width; x++) border.push(pixels[x], pixels[(height - 1) * width + x]);
  for (let y = 0; y < height; y++) border.push(pixels[y * width], pixels[y * width + width - 1]);
  const background = median(border);
  const noise = 5 * 1.4826 * median(border.map((value) => Math.abs(value - background)));
  const [lowest, highest] = [-largest(pixels.map((value) => -value)), largest(pixels)];
  const darkInk = background - lowest > highest - background;
  const ink = pixels.map((value) => (darkInk ? background - value : value - background) - noise);
  const strongest = largest(ink);
  // blank: nothing; else the strongest ink at 255, as in MNIST
  return { pixels: ink.map((value) => (strongest > 0 ? (Math.max(value, 0) * 255) / strongest : 0)), width, height };
}

/** The box of the ink stronger than 5% of the strongest (ignoring JPEG's faint halos). */
function cropToInk({ pixels, width, height }) {
  const threshold = 0.05 * largest(pixels);
  let [top, bottom, left, right] = [height, -1, width, -1];
  pixels.forEach((value, i) => {
    if (value <= threshold) return;
    const [y, x] = [Math.floor(i / width), i % width];
    [top, bottom, left, right] = [Math.min(top, y), Math.max(bottom, y), Math.min(left, x), Math.max(right, x)];
  });
  if (bottom < 0) return { pixels, width, height };
  const [newWidth, newHeight] = [right - left + 1, bottom - top + 1];
  const cropped = new Float32Array(newWidth * newHeight);
  for (let y = 0; y < newHeight; y++) {
    cropped.set(pixels.subarray((top + y) * width + left, (top + y) * width + right + 1), y * newWidth);
  }
  return { pixels: cropped, width: newWidth, height: newHeight };
}

function resizeLongerSide(picture, length) {
  const scale = length / Math.max(picture.width, picture.height);
  const width = Math.max(1, Math.round(picture.width * scale));
  const height = Math.max(1, Math.round(picture.height * scale));
  return transpose(resizeRows(transpose(resizeRows(picture, width)), height));
}

/** Each row resampled to `newWidth` with a triangle filter widened when shrinking (antialiased, as PIL does). */
function resizeRows({ pixels, width, height }, newWidth) {
  const scale = width / newWidth;
  const support = Math.max(scale, 1);
  const resized = new Float32Array(newWidth * height);
  for (let x = 0; x < newWidth; x++) {
    const center = (x + 0.5) * scale;
    const first = Math.max(0, Math.floor(center - support));
    const last = Math.min(width, Math.ceil(center + support));
    const weights = [];
    for (let j = first; j < last; j++) weights.push(Math.max(0, 1 - Math.abs((j + 0.5 - center) / support)));
    const total = weights.reduce((sum, weight) => sum + weight, 0);
    for (let y = 0; y < height; y++) {
      let value = 0;
      weights.forEach((weight, k) => (value += weight * pixels[y * width + first + k]));
      resized[y * newWidth + x] = value / total;
    }
  }
  return { pixels: resized, width: newWidth, height };
}

function transpose({ pixels, width, height }) {
  const transposed = new Float32Array(pixels.length);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) transposed[x * height + y] = pixels[y * width + x];
  return { pixels: transposed, width: height, height: width };
}

/** Paste into a black 28x28 with its centre of mass at pixel (14, 14); what falls outside is cut off. */
function placeOnCanvas({ pixels, width, height }) {
  const canvas = new Float32Array(SIZE * SIZE);
  let [total, sumY, sumX] = [0, 0, 0];
  pixels.forEach((value, i) => {
    total += value;
    sumY += value * Math.floor(i / width);
    sumX += value * (i % width);
  });
  if (total === 0) return { pixels: canvas, width: SIZE, height: SIZE };
  const top = Math.round(SIZE / 2 - sumY / total);
  const left = Math.round(SIZE / 2 - sumX / total);
  pixels.forEach((value, i) => {
    const [y, x] = [top + Math.floor(i / width), left + (i % width)];
    if (y >= 0 && y < SIZE && x >= 0 && x < SIZE) canvas[y * SIZE + x] = value;
  });
  return { pixels: canvas, width: SIZE, height: SIZE };
}
