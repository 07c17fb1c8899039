"""Run the peer ``latex-ocr-junia`` on a list of images; executed by the python of ``.venv-peer``
(made by ``benchmarks/peer.py --setup``), never by ours, and importing nothing of img2latex_lib.

    .venv-peer/bin/python benchmarks/peer_runner.py LIST OUT [--beam-size 3] [--threads 1]

LIST holds ``id<TAB>image path`` lines. For each image the model and weights shipped inside the
package are used exactly as its ``predict_image`` does (same preprocessing, ``generate`` call and
defaults: beam 3, length penalty 0.6, at most 512 characters), but loaded once, not per image.
A line ``id<TAB>seconds<TAB>finished<TAB>prediction`` is appended to OUT per image as it is done
(``finished`` is 0 when decoding stopped at the length limit, not at <eos>); ids already in OUT
are skipped, so a killed run resumes.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from latex_ocr_junia.data import load_and_preprocess_image
from latex_ocr_junia.model import build_model, load_checkpoint
from latex_ocr_junia.predict import ASSETS_DIR
from latex_ocr_junia.tokenizer import LatexTokenizer
from latex_ocr_junia.utils import load_model_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("list", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--beam-size", type=int, default=3)
    parser.add_argument("--length-penalty", type=float, default=0.6)
    parser.add_argument("--max-length", type=int, default=None,
                        help="decoding limit in characters (default: the model's, 512)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    tokenizer = LatexTokenizer.load(ASSETS_DIR / "tokenizer.json")
    config = load_model_config(ASSETS_DIR / "model_config.json")
    max_length = args.max_length or config.max_length
    model = build_model(config)
    load_checkpoint(model, str(ASSETS_DIR / "best.pt"), device="cpu")
    model.eval()

    done = set()
    if args.out.exists():
        done = {line.split("\t", 1)[0] for line in args.out.read_text().splitlines()}
    todo = [line.split("\t", 1) for line in args.list.read_text().splitlines() if line.strip()]
    todo = [(key, path) for key, path in todo if key not in done]
    with args.out.open("a", encoding="utf-8") as out:
        for number, (key, path) in enumerate(todo, 1):
            start = time.perf_counter()
            image = load_and_preprocess_image(
                Path(path).resolve(), image_height=config.image_height,
                image_width=config.image_width, channels=1).unsqueeze(0)
            with torch.no_grad():
                ids = model.generate(
                    images=image, bos_token_id=tokenizer.bos_id, eos_token_id=tokenizer.eos_id,
                    max_length=max_length, beam_size=args.beam_size,
                    length_penalty=args.length_penalty)[0].tolist()
            latex = " ".join(tokenizer.decode(ids).split())
            seconds = time.perf_counter() - start
            finished = int(tokenizer.eos_id in ids)
            out.write(f"{key}\t{seconds:.3f}\t{finished}\t{latex}\n")
            out.flush()
            print(f"[{args.out.name}] {number}/{len(todo)} id {key}: {seconds:.1f} s",
                  file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
