"""The web page (``web/dist``) in headless Chromium against the Python ONNX runtime on the same
export: page load, first and later prediction times, and how often the two predict the same
tokens. Images go in through the page's file input one at a time, as a user gives them.

    python benchmarks/web_page.py [--n 200]

Real im2latex-100k val images when ``data/im2latex100k_val`` is there, else rendered synthetic
formulas; images the library rejects (blank ones) are left out. Builds ``web/dist`` first
(``web/build.sh``); needs node, npm, Chromium and Playwright.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import sample_data, table  # noqa: E402

from img2latex_lib.preprocess import ImageError, content_width  # noqa: E402
from img2latex_lib.runtime import MANIFEST_FILE, OnnxProducer, read_manifest  # noqa: E402
from tests.test_web import (  # noqa: E402
    CHROMIUM,
    CHROMIUM_ARGS,
    build,
    open_page,
    predict_file,
    served,
)


def usable(path: str) -> bool:
    try:
        content_width(path)
        return True
    except ImageError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="images (default 200)")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    dist = build()
    images, _, source = sample_data(args.n + 10)
    images = [p for p in images if usable(p)][: args.n]
    model = dist / "model"
    float16 = read_manifest(model)["float16_weights"]
    expected = OnnxProducer(model).predict(images)
    with served(dist) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page, load_seconds = open_page(browser, url)
            model_ms = float(page.get_attribute("#load-time", "data-ms"))
            results = [predict_file(page, Path(p), k + 1) for k, p in enumerate(images)]
        finally:
            browser.close()
    times = [r["ms"] / 1000 for r in results]
    same = sum(r["tokens"] == e for r, e in zip(results, expected, strict=True))
    sizes = {p.name: p.stat().st_size / 1e6 for p in sorted(model.iterdir())
             if p.name != MANIFEST_FILE}
    print(f"{len(images)} {source}; export with float{16 if float16 else 32} weights "
          f"({sum(sizes.values()):.1f} MB: " + ", ".join(f"{k} {v:.1f}" for k, v in
                                                        sizes.items()) + ")\n")
    print(table(["measure", "value"], [
        ["page load, to the model ready", f"{load_seconds:.2f} s (model: {model_ms / 1000:.2f} s)"],
        ["first prediction", f"{times[0]:.2f} s"],
        ["later predictions, median", f"{statistics.median(times[1:]):.3f} s"],
        ["later predictions, 90th percentile",
         f"{statistics.quantiles(times[1:], n=10)[-1]:.3f} s"],
        ["same tokens as the Python ONNX runtime",
         f"{same} of {len(images)} ({same / len(images):.1%})"],
    ]))
    for image, result, tokens in zip(images, results, expected, strict=True):
        if result["tokens"] != tokens:
            print(f"\n{image}:\n  page:   {result['tokens']}\n  python: {tokens}")


if __name__ == "__main__":
    main()
