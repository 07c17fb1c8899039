"""``python -m img2latex_lib.synth fit | sample``."""

from .cli import main

main()
