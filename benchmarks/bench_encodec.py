"""EnCodec 24 kHz tokenization throughput: seconds of audio encoded per wall second, chunked and batched
(`AudioTokenizer.encode_files`) against the named baseline, a naive whole-file encode of one file at a time.

Same run, same model, same files; every variant first runs once untimed (pre-faulting memory, DESIGN §9), then
the variants are interleaved over `--rounds` and each one's best round is kept (other jobs share this machine).
Weights are random (marked below): speed does not depend on weight values. Codes are compared with the
baseline's to show what chunking changes (~1% of codes, at chunk starts).

glibc's allocator matters here (DESIGN §9): it returns the encoder's large activation buffers to the kernel after
every call and faults them in again on the next. `--malloc both` runs the whole benchmark twice in child
processes, with the default allocator and with MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=68719476736.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_encodec.py [--files 4] [--seconds 60] [--rounds 2]
        [--device auto|cpu|cuda] [--threads 1] [--malloc current|both]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402

TUNED_MALLOC = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "68719476736"}
BASELINE = "whole file, 1 at a time"
# (label, chunk_seconds, batch_size); the first is the baseline
VARIANTS = [
    (BASELINE, None, 1),
    ("10 s chunks, batch 1", 10.0, 1),
    ("10 s chunks, batch 4", 10.0, 4),
    ("30 s chunks, batch 1", 30.0, 1),
    ("30 s chunks, batch 4", 30.0, 4),
]


def make_files(folder: Path, n: int, seconds: float, sr: int = 24_000) -> list[Path]:
    """Speech-like test audio: gliding tones under a syllable-rate envelope, plus noise; one WAV per file."""
    rng = np.random.default_rng(0)
    t = np.arange(round(seconds * sr)) / sr
    paths = []
    for i in range(n):
        f0 = 120 + 60 * i + 40 * np.sin(2 * np.pi * 0.2 * t)
        envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t + i)
        wav = 0.3 * envelope * np.sin(2 * np.pi * np.cumsum(f0) / sr) + 0.02 * rng.standard_normal(len(t))
        path = folder / f"item{i}.wav"
        sf.write(path, wav.astype(np.float32), sr, subtype="PCM_16")
        paths.append(path)
    return paths


def run(args: argparse.Namespace) -> dict:
    import torch

    from mm_assets.tokens.audio import AudioTokenizer
    from mm_assets.tokens.config import AudioTokenizerConfig

    torch.set_num_threads(args.threads)
    base = AudioTokenizer.from_config(
        AudioTokenizerConfig(weights_path=None, device=args.device), allow_random_weights=True
    )
    tokenizers = {
        label: AudioTokenizer(base.model, base.config.model_copy(update={"chunk_seconds": cs, "batch_size": bs}),
                              base.identity, base.device)
        for label, cs, bs in VARIANTS
    }

    def encode(label: str, paths: list[Path]) -> list[np.ndarray]:
        tok = tokenizers[label]
        if label == BASELINE:  # the naive way: read one file, encode it whole, next
            return [tok.encode_file(p).codes for p in paths]
        return [r.codes for r in tok.encode_files(paths)]  # chunks of all files pooled into batches

    with tempfile.TemporaryDirectory() as tmp:
        paths = make_files(Path(tmp), args.files, args.seconds)
        audio_s = args.files * args.seconds
        best: dict[str, float] = {}
        differ: dict[str, float] = {}
        for label, _, _ in VARIANTS:  # untimed warm-up of every variant; the baseline's codes are the reference
            codes = encode(label, paths)
            if label == BASELINE:
                reference = codes
            assert all(c.shape == r.shape for c, r in zip(codes, reference)), label
            differ[label] = float(np.mean([np.mean(c != r) for c, r in zip(codes, reference)]))
        for _ in range(args.rounds):
            for label, _, _ in VARIANTS:
                t0 = time.perf_counter()
                encode(label, paths)
                if base.device.type == "cuda":
                    torch.cuda.synchronize()
                best[label] = min(best.get(label, float("inf")), time.perf_counter() - t0)
    return {
        "device": str(base.device),
        "threads": args.threads,
        "weights": base.identity.weights,
        "malloc": {k: os.environ.get(k, "default") for k in TUNED_MALLOC},
        "audio_s": audio_s,
        "rows": [
            {"variant": label, "audio_s_per_s": audio_s / best[label], "best_s": best[label],
             "codes_differing_from_baseline": differ[label]}
            for label, _, _ in VARIANTS
        ],
    }


def print_table(result: dict, baseline_rate: float) -> None:
    malloc = " ".join(f"{k}={v}" for k, v in result["malloc"].items())
    print(f"\n{result['audio_s']:.0f} s of audio, device {result['device']}, {result['threads']} thread(s), "
          f"weights {result['weights']} (speed does not depend on values), malloc: {malloc}")
    print(f"{'variant':<26} {'audio s / s':>11} {'vs baseline':>11} {'codes ≠ baseline':>17}")
    for row in result["rows"]:
        print(f"{row['variant']:<26} {row['audio_s_per_s']:>11.1f} {row['audio_s_per_s'] / baseline_rate:>10.2f}x "
              f"{row['codes_differing_from_baseline']:>16.2%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each file")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--malloc", choices=["current", "both"], default="current",
                        help="current: this process's allocator settings; both: default vs tuned, in child processes")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)  # child mode
    args = parser.parse_args()

    if args.malloc == "current":
        result = run(args)
        if args.json:
            print(json.dumps(result))
        else:
            print_table(result, result["rows"][0]["audio_s_per_s"])
        return

    results = []
    for tuned in (False, True):
        env = {k: v for k, v in os.environ.items() if k not in TUNED_MALLOC}
        if tuned:
            env.update(TUNED_MALLOC)
        child = [sys.executable, __file__, "--json", "--files", str(args.files), "--seconds", str(args.seconds),
                 "--rounds", str(args.rounds), "--device", args.device, "--threads", str(args.threads)]
        out = subprocess.run(child, env=env, check=True, capture_output=True, text=True).stdout
        results.append(json.loads(out.strip().splitlines()[-1]))
    baseline_rate = results[0]["rows"][0]["audio_s_per_s"]  # default allocator, whole file: the named baseline
    for result in results:
        print_table(result, baseline_rate)


if __name__ == "__main__":
    main()
