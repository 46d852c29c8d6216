"""sf3d_model_summary: build a registered SegFormer3D variant and print its size, FLOPs and stage grids."""

from __future__ import annotations

import argparse
import sys

from segformer3d_auto.cli._common import run_cli

EXAMPLES = """examples:
  sf3d_model_summary                                   the paper's network (4 channels, 3 classes) at 128^3
  sf3d_model_summary -m segformer3d_b1 --size 32 160 160 --in-channels 1 --num-classes 14
"""


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``sf3d_model_summary``."""
    return run_cli(_main, argv)


def _main(argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(
        prog="sf3d_model_summary", description=__doc__, epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-m", "--model", default="segformer3d_b0", help="registered variant (default: %(default)s)")
    parser.add_argument("--in-channels", type=int, default=4)
    parser.add_argument("--num-classes", type=int, default=3)
    parser.add_argument("--size", type=int, nargs=3, default=[128, 128, 128], metavar=("Z", "Y", "X"))
    args = parser.parse_args(argv)

    from segformer3d_auto.errors import InputError
    from segformer3d_auto.model import create_model, list_models
    from segformer3d_auto.model.summary import summarize

    try:
        model = create_model(args.model, in_channels=args.in_channels, num_classes=args.num_classes)
        summary = summarize(model, args.size)
    except ValueError as e:
        raise InputError(str(e)) from None
    print(f"{args.model} ({args.in_channels} channels in, {args.num_classes} classes out); variants: "
          f"{', '.join(list_models())}")
    print(summary.format())
    return 0


if __name__ == "__main__":
    sys.exit(main())
