"""Audio-only vs teacher (audio + text) vs students (unconditioned and conditioned on each
teacher-quality estimate), dimensional task, several seeds → a Markdown table for the report.

Smoke test on the synthetic corpus (builds a tiny random text encoder offline):
    python scripts/distill_ablation.py --workdir /tmp/ser-distill --synthetic --standardize --seeds 0,1,2 --fold 1
Real corpus (manifest with text + arousal/valence/dominance, audio cache and text cache present):
    python scripts/distill_ablation.py --workdir W --text-model bert-base --head shiftcnn --fold all
Writes <workdir>/runs/distill_ablation.md (picked up by `ser report <workdir>/runs`) and distill_ablation.csv.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ser.data.corpora.synthetic import prepare_synthetic
from ser.studies.distill_ablation import ABLATION_HEADING, ablation_runs, ablation_table, synthetic_text_workspace
from ser.studies.report import ABLATION_TABLE_FILE
from ser.distill.student import DistillConfig


def prepare_synthetic_workspace(workdir: Path, speakers: int, per_class: int, rater_noise: float,
                                rated_share: float) -> str:
    """The synthetic workspace (corpus generated only if it has no manifest yet); returns the text model."""
    fresh = not (workdir / "manifests" / "synthetic.csv").is_file()
    corpus = (prepare_synthetic(workdir / "data", speakers=speakers, sessions=4, per_class=per_class,
                                rater_noise=rater_noise, rated_share=rated_share) if fresh else None)
    return synthetic_text_workspace(workdir, corpus)[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--synthetic", action="store_true", help="build the synthetic workspace first")
    parser.add_argument("--speakers", type=int, default=8, help="synthetic corpus size (4 sessions)")
    parser.add_argument("--per-class", type=int, default=8, help="synthetic clips per speaker and emotion")
    parser.add_argument("--rater-noise", type=float, default=0.0, help="synthetic rating noise (std)")
    parser.add_argument("--rated-share", type=float, default=1.0, help="synthetic share of rated utterances")
    parser.add_argument("--text-model", help="text cache model (default with --synthetic: the tiny one)")
    parser.add_argument("--head", default="linear")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--fold", default="all")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--estimates", default="none,heldout,mc-dropout,agreement")
    parser.add_argument("--unlabelled", action="store_true", help="students also learn the teacher's labels "
                        "of the unrated utterances (ser distill --unlabelled)")
    parser.add_argument("--alpha", type=float, default=DistillConfig.alpha, help="largest teacher weight")
    parser.add_argument("--standardize", action=argparse.BooleanOptionalAction, default=None,
                        help="z-score audio features (default: on for fbank/mfcc caches, off for SSL caches)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    text_model = (prepare_synthetic_workspace(args.workdir, args.speakers, args.per_class, args.rater_noise,
                                              args.rated_share)
                  if args.synthetic else args.text_model)
    if not text_model:
        parser.error("--text-model is required without --synthetic")
    runs = ablation_runs(
        args.workdir, text_model, [int(s) for s in args.seeds.split(",")], head=args.head, which=args.fold,
        estimates=tuple(args.estimates.split(",")), settings=DistillConfig(alpha=args.alpha, unlabelled=args.unlabelled), device=args.device,
        epochs=args.epochs, lr=args.lr, standardize=args.standardize,
    )
    table = ablation_table(runs)
    out_dir = args.workdir / "runs"  # beside the run directories, where `ser report` picks it up
    out_dir.mkdir(parents=True, exist_ok=True)
    runs.to_csv(out_dir / "distill_ablation.csv", index=False)
    (out_dir / ABLATION_TABLE_FILE).write_text(f"{ABLATION_HEADING}\n\n{table}")
    print(table)
    print(f"table: {out_dir / ABLATION_TABLE_FILE} (included by `ser report {out_dir}`)")


if __name__ == "__main__":
    main()
