#!/usr/bin/env python3
"""Build TensorRT engines for every shipped ONNX model and check them against the CPU.

Engines are built by ONNX Runtime's TensorRT execution provider through
``edge_msa.backends.create_session``: the same session and provider options
(FP16, INT8 for ``*.int8.onnx``) and the same engine cache as
``edge-msa run --backend tensorrt``, so the runtime finds them ready. The
models are the ``.onnx`` files named in ``models/*/manifest.json`` that a GPU
backend loads, plus the Silero VAD that ships inside faster-whisper: where a
manifest names a TensorRT graph (``tensorrt.file``: the text model's FP16
graph, the fusion model's static INT8 QDQ graph; ``docs/tensorrt.md``), that
graph replaces the CPU's dynamic INT8 ``file``, whose ``MatMulInteger`` nodes
TensorRT cannot take (``edge_msa.backends.model_file`` makes the same choice).

Each engine's outputs are compared with ONNX Runtime on the CPU: calibration
faces for the expression CNN (the manifest's ``calibration.file``), sentences
through the manifest's tokenizer for the text model, the fusion model's
calibration inputs (``tensorrt.calibration.file``: real text, speech and face
features), and otherwise generated inputs at the smallest and largest size of
every dynamic axis (which also makes the provider's implicit optimisation
profile cover those sizes).

    build_engines.py                  # build and check; a table on stdout
    build_engines.py --json           # ... and one JSON object as the last stdout line
    build_engines.py --providers cpu  # the whole check path, the CPU standing in (diff 0)
    build_engines.py --if-changed     # exit at once unless models or onnxruntime changed
    build_engines.py --trtexec        # also standalone trtexec engines, with their latency

Exit codes: 0 done; 1 a model failed (or a diff above --fail-above); 2 the
provider is missing (one line on stderr saying how to get it).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
STAMP = "edge-msa-engines.json"
JETSON_INDEX = "https://pypi.jetson-ai-lab.io/jp6/cu126"
PROVIDERS = {"tensorrt": "TensorrtExecutionProvider", "cuda": "CUDAExecutionProvider"}

# Precision per model and why. Engines are built with the runtime's rule
# (edge_msa.backends.providers_for: FP16 always, INT8 for "*.int8.onnx");
# tests/test_deploy.py keeps this table in step with that rule.
PRECISION = {
    "text/text_sentiment.fp16.onnx": (
        "fp16",
        "FP16 graph of the dequantised shipped weights: MAE within 0.005 of FP32 on MOSI dev "
        "and MOSEI valid, where static INT8 QDQ was not (manifest tensorrt)",
    ),
    "fusion/fusion.fp16.onnx": (
        "fp16",
        "FP16 graph of the dequantised shipped weights: MAE within 0.005 of FP32 on MOSI dev "
        "and MOSEI valid, predictions and log-variances within the limits, where static INT8 "
        "QDQ moved a log-variance by 0.18 (manifest tensorrt)",
    ),
    "face/expression.int8.onnx": (
        "int8",
        "QDQ, scales from calibration/: PublicTest accuracy 0.680 INT8 vs 0.682 FP32 (manifest)",
    ),
    "face/expression.fp32.onnx": ("fp16", "FP32 twin of the expression CNN, kept for checks"),
    "face/centerface.onnx": ("fp16", "vendored FP32 detector without Q/DQ nodes"),
    "voice/voice_trunk.int8.onnx": (
        "int8",
        "Whisper blocks 1-2 for the voice head, dynamic INT8 as trained on: TensorRT takes "
        "the convolutions and attention, MatMulInteger runs on the CPU (no GPU twin yet)",
    ),
    "voice/voice_head.onnx": ("fp16", "one 1161x7 MatMul and a softmax: INT8 saves nothing"),
    "faster_whisper/silero_vad_v6.onnx": ("fp16", "small FP32 LSTM shipped by faster-whisper"),
}

# (smallest, largest) size the runtime feeds for a named dynamic axis.
DIM_SIZES = {
    "batch": (1, 8),
    "N": (1, 8),
    "sequence": (1, 64),
    "seq_len": (1, 16),
    "height": (32, 320),
    "width": (32, 320),
}
DEFAULT_DIM = (1, 8)
# Value ranges of generated float inputs where the graph expects more than N(0, 1).
VALUE_RANGE = {
    "face/centerface.onnx": (0.0, 255.0),
    "faster_whisper/silero_vad_v6.onnx": (-0.5, 0.5),
}
SENTENCES = [
    "i loved it",
    "uh",
    "it was okay i guess but the ending dragged on",
    "this movie was a complete waste of time and money and i want those two hours back "
    "because nothing happened at all and the actors looked bored in every single scene "
    "while the music kept telling me to feel something i never felt even once",
]
DTYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}


class MissingProvider(RuntimeError):
    """The execution provider asked for is not usable here; the message says how to get it."""


# ------------------------------------------------------------------ models


def manifest_models(root: Path) -> dict[str, Path]:
    """Every existing ``.onnx`` file named (as a key or a value) in ``root/*/manifest.json``,
    but for a CPU-only graph: a manifest's ``file`` when its ``tensorrt.file`` replaces it."""
    found: dict[str, Path] = {}
    for manifest in sorted(Path(root).glob("*/manifest.json")):
        data = json.loads(manifest.read_text(encoding="utf-8"))
        cpu_only = {data.get("file")} if (data.get("tensorrt") or {}).get("file") else set()
        for name in sorted(set(_onnx_names(data)) - cpu_only):
            path = manifest.parent / name
            if path.is_file():
                found[f"{manifest.parent.name}/{name}"] = path
    return found


def _onnx_names(node):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _onnx_names(key)
            yield from _onnx_names(value)
    elif isinstance(node, list):
        for value in node:
            yield from _onnx_names(value)
    elif isinstance(node, str) and node.endswith(".onnx") and " " not in node:
        yield node


def all_models(root: Path) -> dict[str, Path]:
    models = manifest_models(root)
    try:
        from edge_msa.segmentation.vad import default_model_path

        vad = default_model_path()
        if vad.is_file():
            models[f"faster_whisper/{vad.name}"] = vad
    except ImportError:
        pass
    return models


def precision_of(key: str) -> tuple[str, str]:
    if key in PRECISION:
        return PRECISION[key]
    if ".int8." in Path(key).name:
        return "int8", "not in PRECISION: the runtime enables INT8 for *.int8.onnx"
    return "fp16", "not in PRECISION: the runtime builds FP16"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _manifest_for(path: Path) -> dict:
    manifest = path.parent / "manifest.json"
    return json.loads(manifest.read_text(encoding="utf-8")) if manifest.is_file() else {}


# ------------------------------------------------------------------ inputs


def dim_size(dim, which: int) -> int:
    """A concrete size for one axis: fixed ones as they are, named ones from DIM_SIZES."""
    if isinstance(dim, int) and dim > 0:
        return dim
    return DIM_SIZES.get(str(dim), DEFAULT_DIM)[which]


def generated_feeds(inputs, rng, value_range=None, per_size: int = 2) -> list[dict]:
    """Random inputs at the smallest and then the largest size of each dynamic axis."""
    feeds = []
    for which in (0, 1):
        for _ in range(per_size):
            feed = {}
            for inp in inputs:
                shape = [dim_size(d, which) for d in inp.shape]
                feed[inp.name] = random_array(inp.name, DTYPES[inp.type], shape, rng, value_range)
            feeds.append(feed)
    return feeds


def random_array(name: str, dtype, shape, rng, value_range=None) -> np.ndarray:
    if dtype == np.bool_:
        return rng.random(shape) < 0.5
    if np.issubdtype(dtype, np.integer):
        if "mask" in name:
            return np.ones(shape, dtype)
        return rng.integers(0, 100, size=shape).astype(dtype)
    if value_range is not None:
        return rng.uniform(*value_range, size=shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def calibration_feeds(inputs, manifest: dict, batch: int = 8) -> list[dict] | None:
    """Batches of the manifest's calibration images, when they fit the model's one input."""
    file = (manifest.get("calibration") or {}).get("file")
    if not file or len(inputs) != 1 or not (REPO / file).is_file():
        return None
    (inp,) = inputs
    if DTYPES.get(inp.type) != np.float32 or not all(isinstance(d, int) for d in inp.shape[1:]):
        return None
    images = np.load(REPO / file)["images"].astype(np.float32)
    if int(np.prod(inp.shape[1:])) != images[0].size:
        return None
    images = images.reshape(len(images), *inp.shape[1:])
    chunks = [images[:1]] + [images[i : i + batch] for i in range(1, len(images), batch)]
    return [{inp.name: c} for c in chunks]


def tokenizer_feeds(inputs, manifest: dict, folder: Path) -> list[dict] | None:
    """Token ids of SENTENCES through the manifest's tokenizer: one by one, then padded together."""
    names = {i.name for i in inputs}
    if "input_ids" not in names or not manifest.get("tokenizer"):
        return None
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(folder / manifest["tokenizer"]))
    tok.enable_truncation(max_length=int(manifest.get("max_len", 64)))
    tok.no_padding()
    seqs = [tok.encode(s).ids for s in SENTENCES]
    feeds = [_pad([s], names) for s in seqs]
    return feeds + [_pad(seqs, names)]


def _pad(seqs: list[list[int]], names: set[str]) -> dict[str, np.ndarray]:
    ids = np.zeros((len(seqs), max(len(s) for s in seqs)), np.int64)
    mask = np.zeros_like(ids)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = s
        mask[i, : len(s)] = 1
    feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    return {k: v for k, v in feed.items() if k in names}


def fusion_calibration_feeds(inputs, manifest: dict, batch: int = 8) -> list[dict] | None:
    """The fusion model's calibration rows (real features), one alone and then in batches."""
    file = ((manifest.get("tensorrt") or {}).get("calibration") or {}).get("file")
    if not file or "audio" not in {i.name for i in inputs} or not (REPO / file).is_file():
        return None
    from edge_msa.training.graphs.calibration import fusion_feeds

    return fusion_feeds(REPO / file, 1)[:1] + fusion_feeds(REPO / file, batch)


def sample_feeds(key: str, path: Path, inputs, seed: int = 0) -> tuple[str, list[dict]]:
    """(what the samples are, the feeds) for one model."""
    manifest = _manifest_for(path)
    feeds = calibration_feeds(inputs, manifest)
    if feeds:
        file = manifest["calibration"]["file"]
        count = sum(len(next(iter(f.values()))) for f in feeds)
        return f"{file} ({count} samples)", extremes_first(feeds)
    feeds = fusion_calibration_feeds(inputs, manifest)
    if feeds:
        file = manifest["tensorrt"]["calibration"]["file"]
        count = sum(len(f["text"]) for f in feeds[1:])
        return f"{file} ({count} rows)", extremes_first(feeds)
    feeds = tokenizer_feeds(inputs, manifest, path.parent)
    if feeds:
        return f"{manifest['tokenizer']} ({len(SENTENCES)} sentences)", extremes_first(feeds)
    rng = np.random.default_rng(seed)
    return "generated", extremes_first(generated_feeds(inputs, rng, VALUE_RANGE.get(key)))


def extremes_first(feeds: list[dict]) -> list[dict]:
    """Smallest feed, then the largest, then the rest: TensorRT's profile grows only once."""
    order = sorted(feeds, key=lambda f: sum(v.size for v in f.values()))
    return [order[0], order[-1], *order[1:-1]] if len(order) > 2 else order


# ------------------------------------------------------------------ checks


def compare(reference, candidate, feeds: list[dict]) -> dict[str, dict[str, float]]:
    """Largest absolute difference (and largest reference magnitude) per output over all feeds."""
    names = [o.name for o in reference.get_outputs()]
    worst = {n: {"max_abs_diff": 0.0, "max_abs_ref": 0.0} for n in names}
    for feed in feeds:
        for name, ref, got in zip(
            names, reference.run(names, feed), candidate.run(names, feed), strict=True
        ):
            ref, got = np.asarray(ref, np.float64), np.asarray(got, np.float64)
            if ref.shape != got.shape:
                raise ValueError(f"output {name}: shape {got.shape}, reference {ref.shape}")
            if ref.size:
                diff = np.nan_to_num(np.abs(ref - got), nan=np.inf)
                w = worst[name]
                w["max_abs_diff"] = max(w["max_abs_diff"], float(diff.max()))
                w["max_abs_ref"] = max(w["max_abs_ref"], float(np.abs(ref).max()))
    return worst


def require_provider(provider: str) -> None:
    """Raise MissingProvider (with what to do) unless ``provider`` is in this onnxruntime."""
    if provider == "cpu":
        return
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise MissingProvider(
            f"onnxruntime is not importable ({e}); on JetPack 6 install onnxruntime-gpu "
            f"from {JETSON_INDEX} (deploy/jetson/README.md)"
        ) from None
    wanted = PROVIDERS[provider]
    available = ort.get_available_providers()
    if wanted not in available:
        raise MissingProvider(
            f"onnxruntime {ort.__version__} has no {wanted} (it has: {', '.join(available)}); "
            f"on JetPack 6 install onnxruntime-gpu from {JETSON_INDEX} (deploy/jetson/README.md), "
            f"or pass --providers cpu to run the checks on the CPU"
        )


def check_model(key: str, path: Path, provider: str) -> dict:
    from edge_msa.backends import create_session

    precision, reason = precision_of(key)
    row = {"model": key, "path": str(path), "precision": precision, "reason": reason}
    reference = create_session(path, "cpu")
    start = time.perf_counter()
    candidate = create_session(path, provider)
    used = candidate.get_providers()[0]
    if provider != "cpu" and used != PROVIDERS[provider]:
        raise MissingProvider(
            f"{PROVIDERS[provider]} is listed but did not load for {key} (the session runs on "
            f"{used}): are TensorRT/CUDA libraries installed (JetPack; in a container "
            f"--runtime nvidia)?"
        )
    row["samples"], feeds = sample_feeds(key, path, reference.get_inputs())
    row["feeds"] = len(feeds)
    row["outputs"] = compare(reference, candidate, feeds)  # the engine is built on first run
    row["seconds"] = round(time.perf_counter() - start, 2)
    return row


# ------------------------------------------------------------------ cache and trtexec


def current_stamp(models: dict[str, Path]) -> dict:
    import onnxruntime as ort

    return {"onnxruntime": ort.__version__, "models": {k: sha256(p) for k, p in models.items()}}


def read_stamp(cache: Path) -> dict | None:
    try:
        return json.loads((cache / STAMP).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def purge_stale(cache: Path, stamp: dict) -> list[Path]:
    """Delete the provider's engines unless they were built from exactly these models.

    ONNX Runtime names a cached engine by model file name, graph node names and
    ORT/CUDA/TensorRT versions, not by the weights: a retrained model with the
    same graph would silently reuse the old engine.
    """
    if read_stamp(cache) == stamp:
        return []
    stale = sorted(cache.glob("TensorrtExecutionProvider_*"))
    for f in stale:
        f.unlink()
    return stale


def trtexec_command(exe: str, model: Path, engine: Path, precision: str, inputs) -> list[str]:
    """trtexec for one model: FP16 (+INT8), shapes from DIM_SIZES for dynamic axes."""
    cmd = [exe, f"--onnx={model}", f"--saveEngine={engine}", "--fp16"]
    if precision == "int8":
        cmd.append("--int8")
    shapes: dict[str, list[str]] = {"min": [], "opt": [], "max": []}
    for inp in inputs:
        if all(isinstance(d, int) and d > 0 for d in inp.shape):
            continue
        lo = "x".join(str(dim_size(d, 0)) for d in inp.shape)
        hi = "x".join(str(dim_size(d, 1)) for d in inp.shape)
        shapes["min"].append(f"{inp.name}:{lo}")
        shapes["opt"].append(f"{inp.name}:{lo}")  # the runtime mostly runs one item at a time
        shapes["max"].append(f"{inp.name}:{hi}")
    cmd += [f"--{k}Shapes={','.join(v)}" for k, v in shapes.items() if v]
    return cmd


def run_trtexec(exe: str, key: str, path: Path, precision: str, inputs, cache: Path) -> dict:
    engine = cache / "trtexec" / f"{key.replace('/', '_')}.{sha256(path)[:12]}.engine"
    engine.parent.mkdir(parents=True, exist_ok=True)
    cmd = trtexec_command(exe, path, engine, precision, inputs)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    median = re.search(r"GPU Compute Time:.*median = ([0-9.]+) ms", proc.stdout)
    return {
        "engine": str(engine) if proc.returncode == 0 else None,
        "gpu_ms_median": float(median.group(1)) if median else None,
        "error": None if proc.returncode == 0 else (proc.stdout + proc.stderr).strip()[-300:],
    }


def find_trtexec() -> str | None:
    return shutil.which("trtexec") or next(
        (p for p in ["/usr/src/tensorrt/bin/trtexec"] if os.access(p, os.X_OK)), None
    )


# ------------------------------------------------------------------ report and main


def format_table(rows: list[dict]) -> str:
    head = f"{'model':<36} {'prec':<5} {'output':<12} {'max|diff|':>10} {'max|ref|':>10}"
    lines = [f"{head} {'s':>6}"]
    for row in rows:
        if row.get("error"):
            lines.append(f"{row['model']:<36} {row['precision']:<5} error: {row['error']}")
            continue
        for i, (name, o) in enumerate(row["outputs"].items()):
            head = f"{row['model']:<36} {row['precision']:<5}" if i == 0 else " " * 42
            secs = f"{row['seconds']:>6.1f}" if i == 0 else ""
            line = f"{head} {name:<12} {o['max_abs_diff']:>10.3g} {o['max_abs_ref']:>10.3g} {secs}"
            lines.append(line.rstrip())
        if row.get("trtexec"):
            t = row["trtexec"]
            got = f"{t['gpu_ms_median']} ms GPU median" if t["gpu_ms_median"] else t["error"]
            lines.append(" " * 42 + f" trtexec: {got}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--providers",
        choices=["tensorrt", "cuda", "cpu"],
        default="tensorrt",
        help="what builds and runs the candidate sessions (cpu: a dry run)",
    )
    p.add_argument(
        "--models",
        type=Path,
        help="models folder (default: $EDGE_MSA_MODELS or the models installed with edge-msa)",
    )
    p.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="TEXT",
        help="only models whose name contains TEXT (repeatable)",
    )
    p.add_argument(
        "--cache",
        type=Path,
        help="engine cache (default: the runtime's, $EDGE_MSA_TRT_CACHE or ~/.cache/edge-msa/trt)",
    )
    p.add_argument(
        "--if-changed",
        action="store_true",
        help="exit 0 at once when the cache was built from these models and onnxruntime",
    )
    p.add_argument(
        "--trtexec",
        action="store_true",
        help="also build standalone engines with trtexec and report their GPU latency",
    )
    p.add_argument(
        "--fail-above",
        type=float,
        metavar="DIFF",
        help="exit 1 when an output differs from the CPU by more than DIFF",
    )
    p.add_argument("--json", action="store_true", help="last stdout line: one JSON object")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        require_provider(args.providers)
    except MissingProvider as e:
        print(f"build_engines: {e}", file=sys.stderr)
        return 2
    from edge_msa.backends import DEFAULT_ENGINE_CACHE

    cache = args.cache or Path(os.environ.get("EDGE_MSA_TRT_CACHE", DEFAULT_ENGINE_CACHE))
    os.environ["EDGE_MSA_TRT_CACHE"] = str(cache)  # read by edge_msa.backends.providers_for
    from edge_msa.models import models_root

    root = args.models or models_root().path  # what `edge-msa run` loads
    models = {
        k: p for k, p in all_models(root).items() if not args.only or any(t in k for t in args.only)
    }
    if not models:
        print(f"build_engines: no ONNX models named in {root}/*/manifest.json", file=sys.stderr)
        return 1
    tensorrt = args.providers == "tensorrt"
    full = tensorrt and not args.only  # the stamp speaks for the whole set of models
    stamp = current_stamp(models)
    if args.if_changed and full and read_stamp(cache) == stamp:
        print(f"engines in {cache} are up to date ({len(models)} models)")
        return 0
    purged = purge_stale(cache, stamp) if full and cache.is_dir() else []
    exe = find_trtexec() if args.trtexec else None
    if args.trtexec and exe is None:
        print(
            "build_engines: --trtexec: trtexec not found (JetPack: /usr/src/tensorrt/bin)",
            file=sys.stderr,
        )
    rows = []
    for key, path in models.items():
        try:
            row = check_model(key, path, args.providers)
        except MissingProvider as e:
            print(f"build_engines: {e}", file=sys.stderr)
            return 2
        except Exception as e:  # one broken model must not hide the others
            row = {
                "model": key,
                "path": str(path),
                "precision": precision_of(key)[0],
                "error": f"{type(e).__name__}: {e}".splitlines()[0],
            }
        if exe and not row.get("error"):
            from edge_msa.backends import create_session

            inputs = create_session(path, "cpu").get_inputs()
            row["trtexec"] = run_trtexec(exe, key, path, row["precision"], inputs, cache)
        rows.append(row)
    failed = [r["model"] for r in rows if r.get("error")]
    if args.fail_above is not None:
        failed += [
            r["model"]
            for r in rows
            if not r.get("error")
            and any(o["max_abs_diff"] > args.fail_above for o in r["outputs"].values())
        ]
    if full and not failed:
        cache.mkdir(parents=True, exist_ok=True)
        (cache / STAMP).write_text(json.dumps(stamp, indent=1), encoding="utf-8")
    stand_in = " (stand-in for TensorRT)" if args.providers == "cpu" else ""
    removed = f"; removed {len(purged)} stale files" if purged else ""
    print(f"provider: {args.providers}{stand_in}; engine cache: {cache}{removed}")
    print(format_table(rows))
    if args.json:
        print(
            json.dumps(
                {
                    "provider": args.providers,
                    "cache": str(cache),
                    "onnxruntime": stamp["onnxruntime"],
                    "purged": len(purged),
                    "failed": failed,
                    "models": rows,
                }
            )
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
