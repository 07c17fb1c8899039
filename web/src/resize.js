// Pillow's resize of an 8-bit grayscale image with Image.Resampling.LANCZOS and
// reducing_gap=3.0 (what preprocess.resize_to_height calls), ported from Pillow's
// Image.resize, libImaging/Reduce.c and libImaging/Resample.c to give the same bytes:
// a box reduction by an integer factor first where the image shrinks 6x or more, then two
// separable passes with coefficients in 22-bit fixed point.

const PRECISION_BITS = 32 - 8 - 2;
const SUPPORT = 3; // Lanczos-3

function sinc(x) {
  if (x === 0) return 1;
  const t = x * Math.PI;
  return Math.sin(t) / t;
}

const lanczos = (x) => (x >= -3 && x < 3 ? sinc(x) * sinc(x / 3) : 0);

// The first source pixel and the fixed-point weights of each output pixel along one axis,
// for the source span [in0, in1) (C floats) scaled to outSize pixels.
function coefficients(inSize, in0, in1, outSize) {
  const scale = Math.fround(in1 - in0) / outSize;
  const filterScale = Math.max(scale, 1);
  const support = SUPPORT * filterScale;
  const step = 1 / filterScale;
  const starts = new Int32Array(outSize);
  const weights = [];
  for (let xx = 0; xx < outSize; xx++) {
    const center = in0 + (xx + 0.5) * scale;
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const xmax = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
    const k = new Float64Array(Math.max(xmax, 0));
    let total = 0;
    for (let x = 0; x < xmax; x++) {
      k[x] = lanczos((x + xmin - center + 0.5) * step);
      total += k[x];
    }
    starts[xx] = xmin;
    weights.push(Int32Array.from(k, (w) => {
      const v = (total !== 0 ? w / total : w) * (1 << PRECISION_BITS);
      return Math.trunc(v < 0 ? v - 0.5 : v + 0.5);
    }));
  }
  return { starts, weights };
}

const clip8 = (sum) => Math.min(255, Math.max(0, sum >> PRECISION_BITS));
const HALF = 1 << (PRECISION_BITS - 1);

function horizontal(src, width, rows, firstRow, { starts, weights }) {
  const outWidth = starts.length;
  const out = new Uint8Array(outWidth * rows);
  for (let y = 0; y < rows; y++) {
    const line = (y + firstRow) * width;
    for (let xx = 0; xx < outWidth; xx++) {
      const k = weights[xx];
      let sum = HALF;
      for (let x = 0; x < k.length; x++) sum += src[line + starts[xx] + x] * k[x];
      out[y * outWidth + xx] = clip8(sum);
    }
  }
  return out;
}

function vertical(src, width, firstRow, { starts, weights }) {
  const out = new Uint8Array(width * starts.length);
  for (let yy = 0; yy < starts.length; yy++) {
    const k = weights[yy];
    const top = starts[yy] - firstRow;
    for (let x = 0; x < width; x++) {
      let sum = HALF;
      for (let y = 0; y < k.length; y++) sum += src[(top + y) * width + x] * k[y];
      out[yy * width + x] = clip8(sum);
    }
  }
  return out;
}

// Pillow's ImagingResample of the source box [x0, y0, x1, y1] (C floats).
function resample(src, width, height, outWidth, outHeight, box) {
  const [x0, y0, x1, y1] = box.map(Math.fround);
  const needHorizontal = outWidth !== width || x0 !== 0 || x1 !== outWidth;
  const needVertical = outHeight !== height || y0 !== 0 || y1 !== outHeight;
  const rows = coefficients(height, y0, y1, outHeight);
  const first = rows.starts[0];
  const last = rows.starts[outHeight - 1] + rows.weights[outHeight - 1].length;
  let image = src;
  let imageWidth = width;
  let firstRow = 0;
  if (needHorizontal) {
    image = horizontal(src, width, last - first, first, coefficients(width, x0, x1, outWidth));
    imageWidth = outWidth;
    firstRow = first;
  }
  return needVertical ? vertical(image, imageWidth, firstRow, rows) : image;
}

// Pillow's float32 multiplier of Reduce.c: (2^32 / (n * 256)) as a C float, truncated.
const multiplier = (n) => Math.trunc(Math.fround(4294967296 / Math.fround(n * 256)));

// Image.reduce: the mean of each fx x fy block (the last row and column of blocks partial).
function reduce(src, width, height, fx, fy) {
  const outWidth = Math.ceil(width / fx);
  const outHeight = Math.ceil(height / fy);
  const out = new Uint8Array(outWidth * outHeight);
  for (let oy = 0; oy < outHeight; oy++) {
    const y1 = Math.min(oy * fy + fy, height);
    for (let ox = 0; ox < outWidth; ox++) {
      const x1 = Math.min(ox * fx + fx, width);
      let sum = 0;
      for (let y = oy * fy; y < y1; y++) {
        for (let x = ox * fx; x < x1; x++) sum += src[y * width + x];
      }
      const n = (x1 - ox * fx) * (y1 - oy * fy);
      out[oy * outWidth + ox] = Math.floor((sum + (n >> 1)) * multiplier(n) / 16777216);
    }
  }
  return { data: out, width: outWidth, height: outHeight };
}

// A width x height grayscale image (one byte a pixel, rows top down) resized to
// outWidth x outHeight as Pillow's img.resize(size, LANCZOS, reducing_gap=3.0) does.
export function resizeLanczos(src, width, height, outWidth, outHeight, reducingGap = 3) {
  const fx = Math.trunc(width / outWidth / reducingGap) || 1;
  const fy = Math.trunc(height / outHeight / reducingGap) || 1;
  if (fx === 1 && fy === 1) {
    return resample(src, width, height, outWidth, outHeight, [0, 0, width, height]);
  }
  const small = reduce(src, width, height, fx, fy);
  return resample(small.data, small.width, small.height, outWidth, outHeight,
    [0, 0, width / fx, height / fy]);
}
