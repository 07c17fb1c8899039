// Image pixels -> model input, as img2latex_lib/preprocess.py's prepare_image does it (without
// augmentation): grayscale, dark ink on white, crop to ink, scale to the model's height with the
// aspect kept (Pillow's Lanczos, resize.js), pad on the right with white to a width bucket.

import { resizeLanczos } from "./resize.js";

const MAX_PIXELS = 40_000_000;
const MAX_SIDE = 30_000;
const INK_THRESHOLD = 200; // a pixel darker than this counts as ink when cropping
const MIN_CONTRAST = 32; // ink at least this many grey levels away from the page
const MARGIN = 2; // white pixels kept around the ink

// An input that cannot be used as a formula image.
export class ImageError extends Error {}

// An ImageError for an empty or too large image.
export function checkSize(width, height) {
  if (width <= 0 || height <= 0) throw new ImageError(`zero-size image (${width}x${height})`);
  if (width * height > MAX_PIXELS || Math.max(width, height) > MAX_SIDE) {
    throw new ImageError(`image is ${width}x${height} pixels, more than the limit of `
      + `${MAX_PIXELS / 1e6} megapixels or ${MAX_SIDE} pixels a side; downscale it first`);
  }
}

// Python's round(): halves go to the even neighbour.
function roundHalfEven(x) {
  const floor = Math.floor(x);
  const rest = x - floor;
  if (rest !== 0.5) return rest < 0.5 ? floor : floor + 1;
  return floor % 2 === 0 ? floor : floor + 1;
}

const histogram = (gray) => {
  const counts = new Float64Array(256);
  for (const v of gray) counts[v]++;
  return counts;
};

// np.searchsorted(np.cumsum(counts), half): the first level where the running count reaches it.
function level(counts, half) {
  let sum = 0;
  for (let v = 0; v < 256; v++) if ((sum += counts[v]) >= half) return v;
  return 255;
}

// Grayscale of an image with transparency, composited on a background that suits it: the
// opaque page's colour, or white under dark ink and black under light ink (_composite_alpha).
function composite(gray, rgba) {
  const n = gray.length;
  const opaque = [];
  let weights = 0;
  let weighted = 0;
  for (let i = 0; i < n; i++) {
    const alpha = rgba[4 * i + 3];
    if (alpha >= 128) opaque.push(gray[i]);
    weights += alpha;
    weighted += alpha * gray[i];
  }
  let background;
  if (opaque.length / n > 0.5) {
    opaque.sort((a, b) => a - b);
    const middle = opaque.length >> 1;
    background = opaque.length % 2 ? opaque[middle]
      : Math.trunc((opaque[middle - 1] + opaque[middle]) / 2);
  } else {
    background = (weights ? weighted / weights : 0) > 127 ? 0 : 255;
  }
  return gray.map((v, i) => {
    const alpha = rgba[4 * i + 3];
    const t = background * (255 - alpha) + v * alpha + 128; // Pillow's paste with an L mask
    return ((t >> 8) + t) >> 8;
  });
}

// 8-bit grayscale as Pillow's convert("L") (ITU-R 601-2 luma, in fixed point).
function toGray(rgba, width, height) {
  const gray = new Uint8Array(width * height);
  let transparent = false;
  for (let i = 0; i < gray.length; i++) {
    const p = 4 * i;
    gray[i] = (rgba[p] * 19595 + rgba[p + 1] * 38470 + rgba[p + 2] * 7471 + 0x8000) >> 16;
    if (rgba[p + 3] < 255) transparent = true;
  }
  return transparent ? composite(gray, rgba) : gray;
}

// Whether the ink is lighter than the page (white on orange, light on dark).
function lightInk(counts) {
  const page = level(counts, counts.reduce((a, b) => a + b) / 2);
  let ink = 0;
  let sum = 0;
  counts.forEach((count, v) => {
    if (Math.abs(v - page) >= MIN_CONTRAST) {
      ink += count;
      sum += count * v;
    }
  });
  return ink ? sum / ink > page : page < 128;
}

// Invert light ink; stretch levels so that ink is black and the page white (_dark_on_white).
function darkOnWhite(gray) {
  let counts = histogram(gray);
  if (lightInk(counts)) {
    gray = gray.map((v) => 255 - v);
    counts = counts.reverse();
  }
  const background = level(counts, gray.length / 2);
  const darkest = counts.findIndex((count) => count > 0);
  if ((darkest === 0 && background === 255) || background - darkest < MIN_CONTRAST) return gray;
  const scale = 255 / (background - darkest);
  const table = Array.from({ length: 256 },
    (_, v) => Math.min(255, Math.max(0, roundHalfEven((v - darkest) * scale))));
  return gray.map((v) => table[v]);
}

// The ink's box plus a white margin (crop_to_ink); an ImageError for a blank image.
function cropToInk(gray, width, height) {
  let [left, top, right, bottom] = [width, height, 0, 0];
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      if (gray[y * width + x] < INK_THRESHOLD) {
        left = Math.min(left, x);
        right = Math.max(right, x + 1);
        top = Math.min(top, y);
        bottom = Math.max(bottom, y + 1);
      }
    }
  }
  if (right === 0) {
    throw new ImageError(`blank image (no ink darker than ${INK_THRESHOLD}/255)`);
  }
  const w = right - left + 2 * MARGIN;
  const h = bottom - top + 2 * MARGIN;
  const out = new Uint8Array(w * h).fill(255);
  for (let y = 0; y < h; y++) {
    const sy = top - MARGIN + y;
    if (sy < 0 || sy >= height) continue;
    for (let x = 0; x < w; x++) {
      const sx = left - MARGIN + x;
      if (sx >= 0 && sx < width) out[y * w + x] = gray[sy * width + sx];
    }
  }
  return { data: out, width: w, height: h };
}

// (w, h) scaled, aspect kept, to targetHeight, or less if it would be wider than maxWidth.
function fitSize(width, height, targetHeight, maxWidth) {
  const scale = Math.min(targetHeight / height, maxWidth / width);
  return [Math.min(maxWidth, Math.max(1, roundHalfEven(width * scale))),
    Math.min(targetHeight, Math.max(1, roundHalfEven(height * scale)))];
}

const minimum = (data) => data.reduce((a, b) => Math.min(a, b), 255);

// Levels stretched so that the darkest pixel is as dark as `darkest` again (_keep_ink_dark).
function keepInkDark(data, darkest) {
  const now = minimum(data);
  if (now <= darkest || now >= 255) return data;
  const factor = (255 - darkest) / (255 - now);
  const table = Array.from({ length: 256 },
    (_, v) => (v < 255 ? roundHalfEven(255 - (255 - v) * factor) : 255));
  return data.map((v) => table[v]);
}

// Scaled to `height` rows (or to maxWidth, then padded to `height`, centred).
function resizeToHeight({ data, width, height: rows }, height, maxWidth) {
  const [w, h] = fitSize(width, rows, height, maxWidth);
  if (w !== width || h !== rows) {
    data = keepInkDark(resizeLanczos(data, width, rows, w, h), minimum(data));
  }
  if (h === height) return { data, width: w };
  const out = new Uint8Array(w * height).fill(255);
  out.set(data, ((height - h) >> 1) * w);
  return { data: out, width: w };
}

// RGBA pixels (4 bytes a pixel, rows top down) -> {data: Float32Array [height * W] in [0, 1],
// ink dark, width: W}, W a multiple of widthStep; `model` holds input_height, max_width and
// width_step (model.json's names).
export function prepareImage(rgba, width, height, model) {
  checkSize(width, height);
  const gray = darkOnWhite(toGray(rgba, width, height));
  const rows = model.input_height;
  const scaled = resizeToHeight(cropToInk(gray, width, height), rows, model.max_width);
  const step = model.width_step;
  const padded = Math.max(1, Math.ceil(scaled.width / step)) * step;
  const data = new Float32Array(rows * padded).fill(1);
  for (let y = 0; y < rows; y++) {
    for (let x = 0; x < scaled.width; x++) {
      data[y * padded + x] = scaled.data[y * scaled.width + x] / 255;
    }
  }
  return { data, width: padded };
}
