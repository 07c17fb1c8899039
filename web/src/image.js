// A pasted, dropped or chosen image file -> its RGBA pixels, decoded by the browser as they are
// stored (no colour management: Pillow applies none either).

import { ImageError, checkSize } from "./preprocess.js";

export async function decodeImage(blob) {
  let bitmap;
  try {
    bitmap = await createImageBitmap(blob, { colorSpaceConversion: "none",
      premultiplyAlpha: "none" });
  } catch {
    throw new ImageError("not an image (or a format this browser cannot read)");
  }
  try {
    const { width, height } = bitmap;
    checkSize(width, height);
    const canvas = new OffscreenCanvas(width, height);
    const context = canvas.getContext("2d", { willReadFrequently: true });
    context.drawImage(bitmap, 0, 0);
    return { data: context.getImageData(0, 0, width, height).data, width, height };
  } finally {
    bitmap.close();
  }
}
