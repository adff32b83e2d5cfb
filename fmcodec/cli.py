"""The `fmcodec` command line: calibrate, encode, decode, stats, bench, fits (and eval, board).

Every command checks its input before it writes anything; outputs are written to a temporary name
and renamed into place, so a failed run never leaves a half-written file. Errors print one line
(`fmcodec: error: ...`) and exit with status 2 (bad input) or 1 (failure while running).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

INT_DTYPES = {"int8": np.int8, "uint8": np.uint8, "int16": np.int16}


class CliError(Exception):
    """A problem with the user's input: printed as one line, exit status 2."""


# -- input / output ------------------------------------------------------------------------------
def load_tensor(path: str, key: str | None = None, input_scale: float | None = None,
                dtype: str = "int8") -> np.ndarray:
    """Read a (C,H,W) or (N,C,H,W) integer tensor from .npy or .npz, checked.

    Float tensors need an explicit `input_scale`: x_int = round(x / input_scale), saturated to
    `dtype`. NaN or infinite values are refused.
    """
    p = Path(path)
    if not p.exists():
        raise CliError(f"{path}: no such file")
    try:
        obj = np.load(p, allow_pickle=False)
        if isinstance(obj, np.lib.npyio.NpzFile):
            with obj:
                arr = _pick_array(obj, key, path)
        else:
            arr = _pick_array(obj, key, path)
    except (OSError, ValueError, EOFError) as e:
        raise CliError(f"{path}: cannot read as .npy/.npz ({e})") from None
    return check_tensor(np.asarray(arr), path, input_scale, dtype)


def _pick_array(obj, key, path):
    if isinstance(obj, np.ndarray):
        if key is not None:
            raise CliError(f"{path}: --key given but the file is a single .npy array")
        return obj
    keys = list(obj.keys())
    if key is None:
        if len(keys) != 1:
            raise CliError(f"{path}: holds {len(keys)} arrays; choose one with --key "
                           f"(available: {', '.join(keys[:20])}{' ...' if len(keys) > 20 else ''})")
        key = keys[0]
    if key not in keys:
        raise CliError(f"{path}: no array named {key!r} (available: {', '.join(keys[:20])})")
    return obj[key]


def check_tensor(arr: np.ndarray, name: str = "tensor", input_scale: float | None = None,
                 dtype: str = "int8") -> np.ndarray:
    if arr.ndim not in (3, 4):
        raise CliError(f"{name}: expected a (C,H,W) or (N,C,H,W) tensor, got shape {arr.shape}")
    if 0 in arr.shape:
        raise CliError(f"{name}: empty tensor, shape {arr.shape}")
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all():
            raise CliError(f"{name}: contains NaN or infinite values")
        if input_scale is None:
            raise CliError(f"{name}: float tensor ({arr.dtype}) needs --input-scale "
                           f"(integer value = round(x / scale))")
        if not input_scale > 0:
            raise CliError("--input-scale must be positive")
        info = np.iinfo(INT_DTYPES[dtype])
        arr = np.clip(np.rint(arr / input_scale), info.min, info.max).astype(INT_DTYPES[dtype])
    elif arr.dtype not in (np.int8, np.uint8, np.int16):
        raise CliError(f"{name}: dtype {arr.dtype} not supported (int8, uint8, int16, or float "
                       f"with --input-scale)")
    if arr.ndim == 3:
        arr = arr[None]
    return arr


def write_atomic(path: str, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same folder, then rename."""
    target = Path(path)
    if target.is_dir():
        raise CliError(f"{path}: is a directory")
    if not target.parent.exists():
        raise CliError(f"{path}: folder {target.parent} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual mode
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_npy_atomic(path: str, arr: np.ndarray) -> None:
    import io

    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    write_atomic(path, buf.getvalue())


def load_profile(path: str):
    from golden.profile import Profile

    return Profile.load(path)


# -- commands ------------------------------------------------------------------------------------
def cmd_calibrate(args) -> int:
    from golden.calibrate import calibrate

    x = load_tensor(args.input, args.key, args.input_scale, args.dtype)
    profile = calibrate(x, transform=args.transform, group=args.group, bits=args.bits,
                        coder=args.coder, tile_pixels=args.tile_pixels, layout=args.layout,
                        frac_bits=args.frac_bits, relu=args.relu,
                        drop=not args.no_drop)
    write_atomic(args.output, profile.to_json().encode())
    info = profile.calibration
    print(f"profile {args.output}: C={profile.channels} N={profile.group} "
          f"{profile.transform} B={args.bits} coder={args.coder} classes={len(profile.classes)} "
          f"predicted {info.get('predicted_bits_per_value', float('nan')):.3f} bits/value",
          file=sys.stderr)
    return 0


def cmd_encode(args) -> int:
    from golden import codec

    profile = load_profile(args.profile)
    x = load_tensor(args.input, args.key, args.input_scale, profile.dtype)
    data = codec.encode(x, profile, embed_profile=not args.no_embed_profile)
    write_atomic(args.output, data)
    return 0


def cmd_decode(args) -> int:
    from golden import codec

    profile = load_profile(args.profile) if args.profile else None
    p = Path(args.input)
    if not p.exists():
        raise CliError(f"{args.input}: no such file")
    x = codec.decode(p.read_bytes(), profile)
    save_npy_atomic(args.output, x)
    return 0


def cmd_stats(args) -> int:
    from golden.stats import measure

    profile = load_profile(args.profile)
    x = load_tensor(args.input, args.key, args.input_scale, profile.dtype)
    s = measure(x, profile)
    if args.json:
        print(json.dumps(s))
    else:
        for k, v in s.items():
            if not isinstance(v, (list, dict)):
                print(f"{k:28s} {v}")
    return 0


def cmd_bench(args) -> int:
    from golden.bench import run_bench, run_sizes

    result = run_bench(repeats=args.repeats)
    if args.sizes:
        result["sizes"] = run_sizes(group=args.group, bits=args.bits)
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            if k != "sizes":
                print(f"{k:32s} {v}")
        for r in result.get("sizes", []):
            print(f"{r['tensor'][:34]:34s} {r['method']:28s} {r['bits_per_value']:7.3f} b/v "
                  f"(entropy {r['entropy_bits_per_value']:6.3f}, pooled "
                  f"{r['pooled_entropy_bits_per_value']:6.3f}) SQNR {r['sqnr_db']:6.2f} dB")
    return 0


def cmd_fits(args) -> int:
    from fmcodec.capacity import LaneBuild, check_profile

    prof = load_profile(args.profile)
    build = LaneBuild.of_kind(args.lanes, group=args.group, max_channels=args.max_channels,
                              max_tile_words=args.max_tile_words, dtype=args.dtype)
    check_profile(prof, build, image_pixels=args.image_pixels)
    print(f"{args.profile}: fits the hardware build ({build.describe()})")
    return 0


def cmd_eval(args) -> int:
    from fmcodec.eval import main as eval_main

    return eval_main(args.eval_args)


def cmd_board(args) -> int:
    from fmcodec.board import run_board

    return run_board(board=args.board, port=args.port, tensor=args.tensor, baud=args.baud)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="fmcodec", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)

    def tensor_args(p):
        p.add_argument("input", help="tensor file (.npy or .npz), (C,H,W) or (N,C,H,W)")
        p.add_argument("--key", help="array name inside an .npz holding several")
        p.add_argument("--input-scale", type=float,
                       help="for float tensors: integer value = round(x / scale)")

    p = sub.add_parser("calibrate", help="make a codec profile from feature maps")
    tensor_args(p)
    p.add_argument("--transform", choices=("pca", "dct", "wht", "identity"), default="pca")
    p.add_argument("--group", type=int, default=8, help="transform group size N (divides C)")
    p.add_argument("--bits", type=int, default=8,
                   help="bit width B of the strongest component; lower B = coarser steps")
    p.add_argument("--coder", choices=("auto", "golomb", "huffman", "pooled-huffman"),
                   default="auto")
    p.add_argument("--tile-pixels", type=int, help="pixels per tile (default: one image row)")
    p.add_argument("--layout", choices=("fixed", "compacted"), default="fixed")
    p.add_argument("--frac-bits", type=int, default=12, help="transform fraction bits F")
    p.add_argument("--dtype", choices=tuple(INT_DTYPES), default="int8",
                   help="integer type for float input scaled with --input-scale")
    p.add_argument("--relu", action="store_true", help="apply ReLU on decode")
    p.add_argument("--no-drop", action="store_true",
                   help="code components that are all zero in the calibration data instead of "
                        "dropping them (safer when the tensor to encode differs)")
    p.add_argument("-o", "--output", required=True, help="profile file to write")
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("encode", help="encode a tensor into an .fmc container")
    tensor_args(p)
    p.add_argument("--profile", required=True)
    p.add_argument("--no-embed-profile", action="store_true",
                   help="do not store the profile in the file (decode then needs --profile)")
    p.add_argument("-o", "--output", required=True)
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("decode", help="decode an .fmc container to .npy")
    p.add_argument("input", help=".fmc container")
    p.add_argument("--profile", help="profile (default: the one embedded in the container)")
    p.add_argument("-o", "--output", required=True)
    p.set_defaults(func=cmd_decode)

    p = sub.add_parser("stats", help="measure coded size and quality of a tensor")
    tensor_args(p)
    p.add_argument("--profile", required=True)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_stats)

    p = sub.add_parser("bench", help="golden model throughput against zlib level 6")
    p.add_argument("--json", action="store_true")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--sizes", action="store_true",
                   help="also compare coded sizes of every method on the same tensors")
    p.add_argument("--group", type=int, default=8, help="transform group for --sizes")
    p.add_argument("--bits", type=int, default=8, help="B for --sizes")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("fits", help="check that a profile fits a hardware build of the lanes")
    p.add_argument("profile")
    p.add_argument("--group", type=int, default=8, help="the build's transform group N")
    p.add_argument("--max-channels", type=int, default=512)
    p.add_argument("--max-tile-words", type=int, default=512)
    p.add_argument("--dtype", choices=tuple(INT_DTYPES), default="int8",
                   help="the decoder lane's reconstruction type")
    p.add_argument("--image-pixels", type=int, help="H*W of the layer")
    p.add_argument("--lanes", choices=("full", "compact"), default="full",
                   help="the lane kind: full-rate, or compact (the iCEBreaker's)")
    p.set_defaults(func=cmd_fits)

    p = sub.add_parser("eval", help="network-level evaluation on ResNet-18 (needs [eval] extra)")
    p.add_argument("eval_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("board", help="send a feature map through a board and check it")
    p.add_argument("--board", default="icebreaker")
    p.add_argument("--port", required=True, help="serial port of the board's host link")
    p.add_argument("--tensor", help="tensor file (default: a bundled real feature map)")
    p.add_argument("--baud", type=int, default=None)
    p.set_defaults(func=cmd_board)
    return ap


def main(argv: list[str] | None = None) -> int:
    from golden.profile import ProfileError

    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["eval"]:
        # argparse.REMAINDER does not take arguments that start with "--" (such as --quick),
        # so `fmcodec eval ...` hands everything after "eval" to the evaluation's own parser.
        from fmcodec.eval import main as eval_main

        return eval_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        container_error: type[Exception] = ProfileError
        try:
            from golden.container import ContainerError
            container_error = ContainerError
        except ImportError:  # pragma: no cover - during development only
            pass
        return args.func(args)
    except (CliError, ProfileError, container_error) as e:
        print(f"fmcodec: error: {e}", file=sys.stderr)
        return 2
    except ValueError as e:
        print(f"fmcodec: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fmcodec: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
