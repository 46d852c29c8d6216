"""``sf3d_predict``'s DICOM input, DICOM SEG output and quality report: options, and the steps around
``predict_folder`` (kept apart from ``cli/predict.py`` so that file stays a thin parser)."""

from __future__ import annotations

import argparse
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STAGING = ".dicom_input"
EXAMPLES = """
DICOM: -i may be a folder of DICOM files (any nesting); each image series is a case named
{PatientID}_s{SeriesNumber}_{end of SeriesInstanceUID}; multi-channel models take one series per channel from
each study, matched by SeriesDescription to the model's channel names or to --dicom-channels (a JSON file
{"0": "FLAIR", ...} or "FLAIR,T1,T1ce,T2"). --output-format dicom-seg also writes {case}_seg.dcm referencing
the source series. Every run writes report.json and report.html (quality report; shards of --num-parts
write report_partIofN.json/.html); flagged cases get one warning line on stderr.
  sf3d_predict -i dicom_study -o preds -d 502 --output-format dicom-seg
  sf3d_predict -i dicom_studies -o preds -d 501 --dicom-channels channels.json --save-uncertainty
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of this module."""
    group = parser.add_argument_group("DICOM and quality report")
    group.add_argument("--output-format", choices=("nifti", "dicom-seg"), default="nifti",
                       help="dicom-seg: also a DICOM SEG per case (DICOM input; needs the 'dicom' extra)")
    group.add_argument("--dicom-channels", default=None, metavar="MAP",
                       help="series per channel: a JSON file {\"0\": \"FLAIR\", ...} or comma-separated series "
                            "descriptions (default: the model's channel names)")
    group.add_argument("--dicom-strict", action="store_true",
                       help="refuse, instead of skipping, non-image objects, localisers and inconsistent series")
    group.add_argument("--save-uncertainty", action="store_true",
                       help="write {case}_entropy.nii.gz (normalized entropy of the ensemble) beside each label map")
    group.add_argument("--no-report", action="store_true", help="skip report.json / report.html")


@dataclass
class Session:
    """What ``prepare`` set up for ``finish``."""

    input_folder: Path
    quality: Any = None
    dicom_cases: dict = field(default_factory=dict)
    staging: Path | None = None


def prepare(args: argparse.Namespace, predictor: Any) -> Session:
    """Stage DICOM input as images, and create the quality recorder.

    Raises:
        InputError: DICOM problems, or dicom-seg output without DICOM input.
    """
    from segformer3d_auto.dataset.dicom_series import contains_dicom
    from segformer3d_auto.errors import InputError

    session = Session(Path(args.input))
    if session.input_folder.is_dir() and contains_dicom(session.input_folder):
        from segformer3d_auto.inference.dicom_input import stage_dicom_cases
        from segformer3d_auto.inference.predict_folder import check_output_folder

        if args.output_format == "dicom-seg":
            from segformer3d_auto.inference.dicom_seg import require_highdicom

            require_highdicom()
        check_output_folder(args.output)
        shard = f".part{args.part_id}of{args.num_parts}" if args.num_parts > 1 else ""
        session.staging = Path(args.output) / (STAGING + shard)
        session.dicom_cases = stage_dicom_cases(
            args.input, session.staging, predictor.dataset_json["channel_names"], predictor.file_ending,
            args.dicom_channels, args.dicom_strict)
        session.input_folder = session.staging
        print(f"DICOM: {len(session.dicom_cases)} case(s) from {args.input}")
    elif args.output_format == "dicom-seg":
        raise InputError(f"{args.input}: --output-format dicom-seg needs DICOM input (no DICOM files found)")
    if not args.no_report:
        from segformer3d_auto.inference.quality_report import QualityRecorder

        name = f"report_part{args.part_id}of{args.num_parts}" if args.num_parts > 1 else "report"
        session.quality = QualityRecorder(predictor, args.output, save_uncertainty=args.save_uncertainty, name=name)
        session.quality.sources = {case: [f"{m.files[0].parent} (series {m.series_uid}, {m.description!r})"
                                          for m in members] for case, members in session.dicom_cases.items()}
    elif args.save_uncertainty:
        raise InputError("--save-uncertainty needs the quality report (drop --no-report)")
    return session


def finish(args: argparse.Namespace, predictor: Any, session: Session) -> None:
    """Write the DICOM SEGs and the reports, then remove the staged DICOM images."""
    output = Path(args.output)
    if args.output_format == "dicom-seg":
        from segformer3d_auto.dataset.image_io import read_segmentation
        from segformer3d_auto.inference.dicom_seg import write_dicom_seg

        for case, members in session.dicom_cases.items():
            label_map = output / f"{case}{predictor.file_ending}"
            target = output / f"{case}_seg.dcm"
            if label_map.is_file() and not (args.continue_prediction and target.is_file()):
                seg, _ = read_segmentation(label_map)
                write_dicom_seg(seg, members[0], predictor.label_manager, target)
        print(f"wrote DICOM SEG files to {output}")
    if session.quality is not None:
        report = session.quality.write()
        from segformer3d_auto.inference.report_html import write_prediction_report  # numpy only: also torch-free

        page = write_prediction_report(report)
        flagged = sum(c["flagged"] for c in session.quality.cases.values())
        print(f"quality report: {flagged} of {len(session.quality.cases)} case(s) flagged -> {report}, {page}",
              file=sys.stderr if flagged else sys.stdout)
    if session.staging is not None:
        shutil.rmtree(session.staging, ignore_errors=True)
