"""``sf3d_convert_dicom``: DICOM studies plus label files into the raw dataset layout, for training."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from segformer3d_auto.cli._common import run_cli

EXAMPLES = """examples:
  sf3d_convert_dicom -i dicom_studies -l label_maps -d 503 -n LiverCT --channel-names CT \\
      --labels '{"background": 0, "liver": 1}'
  sf3d_convert_dicom -i mr_studies -l labels -d 504 -n Brain --channel-names FLAIR T1 --labels labels.json

Each image series (multi-channel: each study, one series per channel matched by SeriesDescription to the
channel names or to --dicom-channels) becomes a case {PatientID}_s{SeriesNumber}_{UID end}. A label file
(.nii.gz, .nii, .nrrd, .mha) is named after the case, the SeriesInstanceUID or the PatientID and has the
series' geometry. Labelled cases go to imagesTr/labelsTr, the others to imagesTs.
"""


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``sf3d_convert_dicom``."""
    return run_cli(_main, argv)


def _main(argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(
        prog="sf3d_convert_dicom",
        description="Convert DICOM series and their label maps into $SF3D_RAW/DatasetXXX_Name.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-i", "--input", required=True, type=Path, metavar="DICOM", help="folder of DICOM files")
    parser.add_argument("-l", "--labels-folder", required=True, type=Path, metavar="DIR", help="label maps")
    parser.add_argument("-d", "--dataset-id", required=True, type=int, metavar="ID", help="target dataset ID")
    parser.add_argument("-n", "--name", required=True, help="dataset name (DatasetXXX_NAME)")
    parser.add_argument("--channel-names", nargs="+", required=True, metavar="NAME",
                        help="channel names in order (CT selects CT normalization); also the series descriptions "
                             "matched for multi-channel studies unless --dicom-channels is given")
    parser.add_argument("--labels", required=True, metavar="JSON",
                        help="dataset.json labels, as JSON text or a JSON file: {\"background\": 0, ...}")
    parser.add_argument("--dicom-channels", default=None, metavar="MAP", help="as in sf3d_predict")
    parser.add_argument("--dicom-strict", action="store_true", help="refuse instead of skipping unusable series")
    args = parser.parse_args(argv)
    if args.dataset_id < 0:
        parser.error("-d/--dataset-id must be >= 0")

    from segformer3d_auto.atomic import read_user_json
    from segformer3d_auto.dataset.dicom_convert import convert_dicom
    from segformer3d_auto.errors import InputError
    from segformer3d_auto.paths import raw_root

    if Path(args.labels).is_file():
        labels = read_user_json(Path(args.labels))
    else:
        try:
            labels = json.loads(args.labels)
        except json.JSONDecodeError as e:
            raise InputError(f"--labels: not JSON text or a file ({e.msg})") from None
    if not isinstance(labels, dict):
        raise InputError(f"--labels: needs a JSON object name -> value, got {labels!r}")
    channels = {str(i): n for i, n in enumerate(args.channel_names)}
    folder = convert_dicom(args.input, args.labels_folder, raw_root(), args.dataset_id, args.name, channels, labels,
                           args.dicom_channels, args.dicom_strict)
    print(f"converted {args.input} -> {folder}")
    print(f"next: sf3d_plan_and_preprocess -d {args.dataset_id} --verify")
    return 0


if __name__ == "__main__":
    sys.exit(main())
