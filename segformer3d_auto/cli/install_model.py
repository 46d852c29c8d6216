"""``sf3d_install_model``: put a model zip from ``sf3d_export_model`` under ``$SF3D_RESULTS``, checked first."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from segformer3d_auto.cli._common import run_cli

EXAMPLES = """examples:
  sf3d_install_model model.zip            # -> $SF3D_RESULTS/DatasetXXX_Name/SegFormer3D__3d_fullres
  sf3d_install_model model.zip --force    # replace a different model installed there

Every member is checked against the zip's manifest (sha256) before anything is written; a damaged, altered or
foreign zip is refused with one line and exit status 2, and nothing is installed. Installing the same model
again changes nothing.
"""


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``sf3d_install_model``."""
    return run_cli(_main, argv)


def _main(argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(prog="sf3d_install_model", description="Install a model zip.",
                                     epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("archive", type=Path, metavar="ZIP", help="a zip written by sf3d_export_model")
    parser.add_argument("--force", action="store_true", help="replace a different model installed there")
    args = parser.parse_args(argv)

    from segformer3d_auto.inference.model_archive import install_model

    folder, changed = install_model(args.archive, force=args.force)
    print(f"{'installed' if changed else 'already installed, unchanged:'} {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
