"""`edge-msa eval text|speech|missing|face|voice|asr|clips`: a model on labelled data."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edge_msa.cli.common import add_models, add_report, fail, setup_logging, use_models


def add_parser(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser("eval", help="evaluate a model on labelled data")
    ev_sub = ev.add_subparsers(dest="what", required=True)
    text = ev_sub.add_parser(
        "text", help="the fusion model given only the transcripts (MOSI, MOSEI or MELD CSV)"
    )
    speech = ev_sub.add_parser(
        "speech", help="transcripts spoken by espeak-ng, heard as at run time"
    )
    speech.add_argument(
        "--text",
        default="simulated",
        choices=["present", "simulated", "absent"],
        help="what text the model gets besides the audio",
    )
    missing = ev_sub.add_parser("missing", help="fixed modality subsets and random missing rates")
    for p in (text, speech, missing):
        p.add_argument("--labels", required=True, help="MOSI- or MOSEI-style label.csv (text: "
                       "also MELD's *_sent_emo.csv: acc_3class, f1_3class)")
        p.add_argument("--split", default=None, help="rows whose mode is NAME (default: all)")
        p.add_argument("--model", help="fusion model folder (default: the installed fusion)")
        add_report(p, "write PNG plots here")
    for p in (speech, missing):
        p.add_argument(
            "--limit",
            type=int,
            default=200 if p is missing else None,
            help="a seeded random subset of N sentences",
        )
        p.add_argument("--jobs", type=int, help="processes for speaking and hearing")
    for p in (text, missing):
        p.add_argument(
            "--encoder-only",
            action="store_true",
            help="the v0 path instead: encoder heads (+ inverse-variance fusion)",
        )
    face = ev_sub.add_parser(
        "face", help="the face expression model on FER2013-style npz or a folder of images"
    )
    face_in = face.add_mutually_exclusive_group(required=True)
    face_in.add_argument("--fer2013", help="npz with images (N,48,48) and labels")
    face_in.add_argument(
        "--folder", help="images and a labels.csv (path,emotion): faces found as at run time"
    )
    face.add_argument(
        "--frames", action="store_true",
        help="with --fer2013: each face x4 in a larger frame, found and cropped as at run time",
    )
    face.add_argument(
        "--crop", choices=["aligned", "square", "both", "none"], default="aligned",
        help="folder/frames: the crop (aligned on the landmarks, or the square around the "
        "box); none: the folder's images are face crops already (grey, resized to 48x48)",
    )
    voice = ev_sub.add_parser(
        "voice", help="the voice emotion model on EmoDB, RAVDESS or a labelled folder"
    )
    voice_in = voice.add_mutually_exclusive_group(required=True)
    voice_in.add_argument("--emodb", help="folder of EmoDB-named wav files")
    voice_in.add_argument(
        "--folder", help="a labels.csv (path,emotion[,speaker]), a folder with one, or a folder "
        "of RAVDESS-named clips (03-01-EE-II-SS-RR-AA, e.g. ../shared/datasets/ravdess_speech)"
    )
    voice.add_argument("--speakers", "--actors", dest="speakers",
                       help="only these speakers or RAVDESS actors, e.g. 03,08")
    voice.add_argument("--limit", type=int, help="--folder: an evenly spaced subset of N clips")
    voice.add_argument(
        "--model", help="voice head folder (default: the installed voice head)"
    )
    for p in (face, voice):
        add_report(p, "write a confusion-matrix PNG here")
    asr = _add_asr_parser(ev_sub)
    clips = _add_clips_parser(ev_sub)
    for name, p in (("text", text), ("speech", speech), ("missing", missing),
                    ("face", face), ("voice", voice), ("asr", asr), ("clips", clips)):
        add_models(p)
        p.set_defaults(handler=handle, eval_handler=EVALS[name])


def _add_asr_parser(ev_sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    asr = ev_sub.add_parser(
        "asr", help="speech recognition by encoder window: word error rate, time, features"
    )
    asr.add_argument(
        "--windows", nargs="+", default=["full", "5,10,15,30", "fit"],
        help="candidates, the first the reference: full, fit or sizes like 5,10,15,30, each "
        "with optional @MARGIN seconds and :nrN (no-repeat n-gram size), e.g. fit@2:nr4",
    )
    asr.add_argument("--corpus", nargs="+", default=["media", "ravdess", "espeak", "emodb"],
                     choices=["media", "ravdess", "espeak", "emodb"],
                     help="emodb: German, heard without decoding, for the voice head's UAR")
    asr.add_argument("--data", help="the data sets folder (default: $EDGE_MSA_DATA, then "
                     "../shared/datasets)")
    asr.add_argument("--split", default="dev", help="espeak: the MOSI rows whose mode is NAME")
    asr.add_argument("--limit", type=int, help="at most N clips of each corpus but media, evenly")
    asr.add_argument("--threads", type=int, default=1)
    asr.add_argument("--out", help="one JSON line per clip and window here")
    asr.add_argument("--json", action="store_true", help="last stdout line: one JSON object")
    asr.add_argument("--backend", default="cpu")
    return asr


def _add_clips_parser(ev_sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    clips = ev_sub.add_parser(
        "clips", help="labelled real clips, each through the path of `run --media`: valence "
        "balanced accuracy, positive vs negative, MAE, WER"
    )
    clips.add_argument(
        "--labels", required=True,
        help="CSV with path (relative to it) and emotion and/or label (a score in [-3, 3]), "
        "optional transcript; or a folder with a labels.csv or RAVDESS-named clips",
    )
    clips.add_argument("--actors", "--speakers", dest="speakers",
                       help="only these speakers or RAVDESS actors, e.g. 15,16")
    clips.add_argument("--limit", type=int, help="an evenly spaced subset of N clips")
    clips.add_argument("--config", help="TOML config file, as for `edge-msa run`")
    clips.add_argument("--threads", type=int,
                       help="threads of each model (asr, text, voice, vision); default: config")
    clips.add_argument("--out", help="one JSON line per clip (truth, score, results) here")
    add_report(clips, "write the valence confusion PNG here")
    return clips


def handle(args: argparse.Namespace) -> int:
    setup_logging("WARNING")
    use_models(args)
    try:
        return args.eval_handler(args)
    except (OSError, ValueError, RuntimeError) as e:
        return fail(e)


def _eval_text(args: argparse.Namespace) -> int:
    from edge_msa.evaluation.fusion_eval import evaluate_text

    metrics = evaluate_text(args.labels, args.split, args.model, args.backend, args.encoder_only)
    return _report_fusion(args, metrics)


def _eval_speech(args: argparse.Namespace) -> int:
    from edge_msa.evaluation.fusion_eval import evaluate_speech

    metrics = evaluate_speech(
        args.labels, args.split, args.text, args.limit, args.model, args.backend, args.jobs
    )
    return _report_fusion(args, metrics)


def _eval_missing(args: argparse.Namespace) -> int:
    from edge_msa.evaluation.fusion_eval import evaluate_missing

    metrics = evaluate_missing(
        args.labels, args.split, args.limit, args.model, args.backend, args.jobs, args.encoder_only
    )
    return _report_fusion(args, metrics)


def _report_fusion(args: argparse.Namespace, metrics: dict) -> int:
    from edge_msa.evaluation.report import format_table

    arrays = metrics.pop("_arrays")
    if "subsets" in metrics:
        rows = {
            **{f"subset {k}": v for k, v in metrics["subsets"].items()},
            **{f"r={k}": v for k, v in metrics["random"].items()},
            "random mean": metrics["random_mean"],
        }
        print(format_rows(rows))
    else:
        print(format_table(metrics))
    if args.plot and "confusion_3class" in metrics:  # class labels: no calibration to plot
        from edge_msa.data.class_metrics import POLARITIES
        from edge_msa.evaluation.plots import confusion_png

        path = confusion_png(metrics["confusion_3class"], list(POLARITIES), "sentiment "
                             "(rows: truth)", Path(args.plot) / "sentiment_confusion.png")
        print(f"wrote {path}", file=sys.stderr)
    elif args.plot:
        from edge_msa.evaluation import plots

        out = [plots.calibration_png(*arrays, Path(args.plot) / "calibration.png")]
        if "random" in metrics:
            out.append(plots.robustness_png(metrics["random"], Path(args.plot) / "robustness.png"))
        print("wrote " + ", ".join(map(str, out)), file=sys.stderr)
    if args.json:
        print(json.dumps(metrics))
    return 0


def format_rows(rows: dict[str, dict]) -> str:
    keys = ("mae", "corr", "acc2", "f1", "acc7", "coverage_1sigma", "coverage_2sigma")
    heads = ("mae", "corr", "acc2", "f1", "acc7", "cov±1σ", "cov±2σ")
    width = max(len(k) for k in rows)
    lines = [f"{'':<{width}}  " + " ".join(f"{h:>8}" for h in heads)]
    lines += [
        f"{name:<{width}}  " + " ".join(f"{m[k]:8.4f}" for k in keys) for name, m in rows.items()
    ]
    return "\n".join(lines)


def _eval_face(args: argparse.Namespace) -> int:
    from edge_msa.evaluation.face_eval import evaluate_face, format_face_table
    from edge_msa.models import model_dir

    if args.fer2013 and not args.frames:
        metrics = evaluate_face(args.fer2013, model_dir("face"), args.backend)
        return _report(args, metrics, format_face_table(metrics), "face")
    if args.crop == "none":
        return _eval_face_crops(args, model_dir("face"))
    return _eval_face_frames(args, model_dir("face"))


def _eval_face_crops(args: argparse.Namespace, folder: Path) -> int:
    from edge_msa.evaluation import face_eval

    if not args.folder:
        return fail("--crop none goes with --folder (an npz's faces are crops already)")
    paths, truth = face_eval.read_face_folder(args.folder)
    metrics = face_eval.evaluate_crops(face_eval.folder_crops(paths), truth, folder, args.backend)
    return _report(args, dict(metrics, crop="none"), face_eval.format_face_table(metrics), "face")


def _eval_face_frames(args: argparse.Namespace, folder: Path) -> int:
    import numpy as np

    from edge_msa.evaluation import face_eval
    from edge_msa.vision.detector import FaceDetector

    if args.plot and args.crop == "both":
        return fail("--plot takes one --crop")
    if args.folder:
        paths, truth = face_eval.read_face_folder(args.folder)
        images = face_eval.folder_images(paths)
    else:
        data = np.load(args.fer2013)
        truth = data["labels"].astype(np.int64)
        images = face_eval.npz_frames(data["images"])
    aligns = {"aligned": (True,), "square": (False,), "both": (False, True)}[args.crop]
    model = face_eval.load_expression(folder, args.backend)
    detector = FaceDetector(backend=args.backend)
    results = face_eval.evaluate_frames(images, truth, model, detector, aligns)
    for name, metrics in results.items():
        if len(results) > 1:
            print(f"== {name} crop")
        plain = dict(metrics, crop=name)
        _report(args, plain, face_eval.format_face_table(metrics), "face")
    return 0


def _eval_voice(args: argparse.Namespace) -> int:
    from edge_msa.evaluation import voice_eval

    speakers = _names(args.speakers)
    if args.emodb:
        if args.limit:
            return fail("--limit goes with --folder")
        metrics = voice_eval.evaluate_voice(args.emodb, args.model, args.backend,
                                            speakers=speakers)
    else:
        metrics = voice_eval.evaluate_voice_folder(
            args.folder, args.model, args.backend, speakers=speakers, limit=args.limit
        )
    return _report(args, metrics, voice_eval.format_voice_table(metrics), "voice")


def _names(value: str | None) -> list[str] | None:
    return [s.strip() for s in value.split(",") if s.strip()] if value else None


def _eval_clips(args: argparse.Namespace) -> int:
    from edge_msa.data.class_metrics import POLARITIES
    from edge_msa.data.clip_labels import folder_clips
    from edge_msa.evaluation import clips_eval

    clips = folder_clips(args.labels, _names(args.speakers), args.limit)
    cli: dict = {"runtime": {"backend": args.backend}}
    if args.threads:
        for part in ("asr", "text", "voice", "vision"):
            cli[part] = {"threads": args.threads}
    metrics = clips_eval.evaluate_clips(
        clips, args.config, cli, Path(args.out) if args.out else None, clips_eval.progress
    )
    print(clips_eval.format_clips_table(metrics))
    if args.plot:
        from edge_msa.evaluation.plots import confusion_png

        path = confusion_png(metrics["valence_confusion"], list(POLARITIES),
                             "valence (rows: truth)", Path(args.plot) / "valence_confusion.png")
        print(f"wrote {path}", file=sys.stderr)
    if args.json:
        print(json.dumps(metrics))
    return 0


def _eval_asr(args: argparse.Namespace) -> int:
    import os

    from edge_msa.evaluation import asr_eval

    data = Path(args.data or os.environ.get("EDGE_MSA_DATA", "../shared/datasets"))
    labels = data / "mosi" / "label.csv"
    sources = {
        "media": lambda: asr_eval.media_clips(data / "media", labels),
        "ravdess": lambda: asr_eval.ravdess_clips(data / "ravdess_speech", args.limit),
        "espeak": lambda: asr_eval.espeak_clips(labels, args.split, args.limit),
        "emodb": lambda: asr_eval.emodb_clips(data / "emodb", args.limit),
    }
    for spec in args.windows:
        asr_eval.parse_candidate(spec)  # a typo fails before any clip is heard
    corpora = {name: sources[name]() for name in args.corpus}
    out = Path(args.out) if args.out else None
    metrics = asr_eval.evaluate_asr(corpora, args.windows, args.threads, args.backend, out)
    print(asr_eval.format_asr_table(metrics))
    if args.json:
        print(json.dumps(metrics))
    return 0


def _report(args: argparse.Namespace, metrics: dict, table: str, name: str) -> int:
    print(table)
    if args.plot:
        from edge_msa.evaluation.plots import confusion_png
        from edge_msa.types import FACE_EMOTIONS, VOICE_EMOTIONS

        labels = list(FACE_EMOTIONS if name == "face" else VOICE_EMOTIONS)
        path = confusion_png(
            metrics["confusion"],
            labels,
            f"{name} confusion",
            Path(args.plot) / f"{name}_confusion.png",
        )
        print(f"wrote {path}", file=sys.stderr)
    if args.json:
        print(json.dumps(metrics))
    return 0


EVALS = {
    "text": _eval_text,
    "speech": _eval_speech,
    "missing": _eval_missing,
    "face": _eval_face,
    "voice": _eval_voice,
    "asr": _eval_asr,
    "clips": _eval_clips,
}
