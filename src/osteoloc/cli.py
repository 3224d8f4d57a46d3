"""The `osteoloc` command (pyproject [project.scripts]): helpers a user runs by hand, around the workflow.

    osteoloc manifest --dicom-dir D --pts-dir P --id-pattern REGEX --out manifest.csv
    osteoloc replicate A/report/tables/ablation.csv B/report/tables/ablation.csv [--out comparison.csv]
    osteoloc apply --study STUDY/results --manifest manifest.csv [--labels labels.csv] --out DIR
"""

import argparse
import sys

from osteoloc.apply.command import gallery_path, run_apply
from osteoloc.apply.study import SettingsMismatch, StudyNotFinished

from osteoloc.cohort.manifest_builder import SUBJECT_FROM, VISIT_FROM, build_manifest, unpaired_path
from osteoloc.io.atomic import write_csv
from osteoloc.report.replication import compare_ablation_tables, read_ablation_table, replication_summary


def _parser():
    parser = argparse.ArgumentParser(prog="osteoloc", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    manifest = commands.add_parser(
        "manifest", help="pair DICOMs with their BoneFinder .pts files and write the cohort manifest",
        description="Pair every DICOM under --dicom-dir with the .pts named like it under --pts-dir (one 160-point "
                    "file or the per-hip _L/_R/_RasL files) and write the cohort manifest, plus "
                    "<stem>.unpaired.csv listing every file that could not be paired and why.")
    manifest.add_argument("--dicom-dir", required=True, help="folder searched (recursively) for DICOM files")
    manifest.add_argument("--pts-dir", required=True, help="folder searched (recursively) for .pts files")
    manifest.add_argument("--id-pattern", action="append", default=[], metavar="REGEX",
                          help="regular expression searched in each DICOM's path below --dicom-dir, with named "
                               "groups subject and visit (and optionally cohort), e.g. "
                               "'(?P<subject>OAI-\\d+)-(?P<visit>V\\d\\d)'; repeat it for several naming schemes "
                               "(the first that matches is used)")
    manifest.add_argument("--subject-from", choices=SUBJECT_FROM, default="filename",
                          help="where the subject id comes from (default: the file name)")
    manifest.add_argument("--visit-from", choices=VISIT_FROM, default="filename",
                          help="where the visit comes from (default: the file name)")
    manifest.add_argument("--cohort", default="", help="cohort name for rows whose pattern has no cohort group")
    manifest.add_argument("--subject-format", default="{subject}",
                          help="the subject id built from the pattern's groups (with --subject-from filename), "
                               "e.g. '{cohort}-{subject}' for labels that spell CHECK-00123 when the files are "
                               "named 00123_T00_APO.dcm (cohort: its group or --cohort)")
    manifest.add_argument("--out", required=True, help="the manifest CSV to write")
    replicate = commands.add_parser(
        "replicate",
        help="do two runs of one design (e.g. the science study and its independent replication) reach the same "
             "conclusions?",
        description="Compare two ablation tables of one design comparison by comparison: a primary comparison's "
                    "verdict is its sign when it survives Holm's correction, any other's its sign when its 95 % "
                    "interval (the crossed random-effects one, else the bootstrap's, else the t interval over "
                    "seeds) excludes 0, else none. Prints the claims each run made; two runs agree on a "
                    "comparison only when both claim it with the same sign (no claim in both is not counted). "
                    "Exit status 1 when a primary claim of either run is not shared by the other, 2 on "
                    "unreadable or mismatched tables.")
    replicate.add_argument("table_a", help="report/tables/ablation.csv of the first run")
    replicate.add_argument("table_b", help="report/tables/ablation.csv of the second run")
    replicate.add_argument("--out", help="write every comparison side by side to this CSV")
    apply = commands.add_parser(
        "apply", help="apply a finished study's models to new radiographs: predictions, maps, a gallery",
        description="Check and preprocess the new cohort into --out the way the study was preprocessed, run "
                    "every trained model of the study (read only) on every hip, and write the probabilities "
                    "per seed and their seed ensemble, the Grad-CAM maps, the external evaluation where labels "
                    "exist, and a static HTML gallery (docs/apply.md). Refuses a study that has not finished or "
                    "whose settings differ from the new cohort's.")
    apply.add_argument("--study", required=True, help="the finished study's results folder (never written)")
    apply.add_argument("--manifest", required=True, help="the new cohort's manifest CSV (docs/contracts.md)")
    apply.add_argument("--labels", help="its label table (without: every grade unknown, no evaluation rows)")
    apply.add_argument("--out", required=True, help="the apply run's results folder (created)")
    apply.add_argument("--cores", type=int, default=2, help="snakemake --cores (default 2)")
    apply.add_argument("--configfile", action="append", default=[],
                       help="more config given after the generated one, e.g. cohort.label_columns or apply.*")
    return parser


def _apply(args):
    try:
        status = run_apply(args.study, args.manifest, args.labels, args.out, cores=args.cores,
                           configfiles=args.configfile)
    except (StudyNotFinished, SettingsMismatch, OSError, ValueError) as err:
        print(f"osteoloc apply: {err}", file=sys.stderr)
        return 2
    if status == 0:
        print(f"gallery: {gallery_path(args.out)}")
    else:
        print(f"osteoloc apply: snakemake failed (exit status {status}); its log says why", file=sys.stderr)
    return status


def _replicate(args):
    comparison = compare_ablation_tables(read_ablation_table(args.table_a), read_ablation_table(args.table_b))
    if args.out:
        write_csv(comparison, args.out)
    print("\n".join(replication_summary(comparison)))
    primary = comparison[comparison["primary"] & comparison["claimed"]]
    return 0 if primary["agree"].all() else 1


def main(argv=None):
    """Run the command line `argv` (default sys.argv[1:]); returns the exit status."""
    args = _parser().parse_args(argv)
    if args.command == "apply":
        return _apply(args)
    if args.command == "replicate":
        try:
            return _replicate(args)
        except (OSError, ValueError, KeyError) as err:
            print(f"osteoloc replicate: {err}", file=sys.stderr)
            return 2
    try:
        manifest, unpaired = build_manifest(args.dicom_dir, args.pts_dir, args.out, args.id_pattern,
                                            args.subject_from, args.visit_from, args.cohort, args.subject_format)
    except ValueError as err:
        print(f"osteoloc manifest: {err}", file=sys.stderr)
        return 2
    print(f"{len(manifest)} radiographs in {args.out}; {len(unpaired)} rows in {unpaired_path(args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
