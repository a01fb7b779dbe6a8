"""Benchmarks of the C++ kernel (``lsrl._kernel``), all ratios measured in one run on one machine.

    python benchmarks/kernel.py            # everything (a few minutes)
    python benchmarks/kernel.py --quick    # fewer repeats, shorter sequences
    python benchmarks/kernel.py --only a,d --json results.json
    python benchmarks/kernel.py --smoke    # tiny sizes, one repeat: checks every section still runs (CI)

Sections:
  (a) kernel vs numpy backend: the token program (Listing 2, n = 10 and n = 3, 20 entries, multiplicative
      conditional) and the continuous program (Listing 1, 2 -> 2, N = 8), compiled for linear_rnn; the
      reference implementation's tokens/s (compile.md §6) beside ours;
  (b) kernel vs torch.nn.LSTM / GRU / RNN running the same standard-mode weights (model.to_torch()),
      batch 1 and batch 64;
  (c) diagonal and selective scan throughput as a fraction of numpy.copyto bandwidth on the same bytes;
  (d) tokens/s for prompt lengths 1e3 ... 1e6, and the peak memory of model.stream at 1e6 tokens;
  (e) lanes per block (time steps x batch elements run node by node): step-by-step (1) ... layer-by-layer;
  (f) kernel vs the Hugging Face model's own forward on the same weights (model.to_hf() loaded by
      transformers.AutoModel, float32, one thread each, HF_HUB_OFFLINE=1) for hawk, griffin and mamba, standard activations,
      token program n = 3 (batch 1 and 64) and n = 10 (batch 1; HF needs minutes per call there), and the
      kernel's tokens/s beside the linear_rnn model of the same program.

Timings are the best of several repeats (wall clock, time.perf_counter); the machine's load shows as noise,
so compare numbers of one run only.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
import time
import warnings

import numpy as np

warnings.filterwarnings("ignore")

import lsrl  # noqa: E402
from lsrl.programs import (continuous_approximator, continuous_prompt, continuous_query,  # noqa: E402
                           create_test_target_function, draw_queries, random_token_map, token_map,
                           token_prompt)

REFERENCE = {  # the reference implementation's tokens/s, compiled (compile.md §6)
    "token n=10": 32.9, "token n=3": 60.9, "continuous 2->2 N=8": 260.0,
}


def best_time(fn, repeats: int) -> float:
    fn()  # warm-up (plans, caches)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def compile_quiet(program, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lsrl.compile(program, **kw)


def token_prompts(n: int, count: int, seed: int = 0) -> np.ndarray:
    """``count`` prompts of the token program (20 entries, vocab 10), stacked ``(count, T, 1)``."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        mapping = random_token_map(n, 20, 10, rng)
        out.append(token_prompt(draw_queries(mapping, 1, rng)[0], mapping))
    return np.stack(out)


def continuous_prompts(count: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    f = create_test_target_function(2, 2, rng=rng)
    prompt = continuous_prompt(f, 2, 2, 8)
    return np.stack([np.vstack([continuous_query(rng.uniform(0.05, 0.95, 2), 2), prompt]) for _ in range(count)])


def table(title: str, header: list[str], rows: list[list]) -> str:
    lines = [f"\n### {title}\n", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        lines.append("| " + " | ".join(str(c) for c in row) + " |")
    return "\n".join(lines)


def fmt(x: float, digits: int = 3) -> str:
    if x >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


# ------------------------------------------------------------------------------------------ (a)

def section_a(args, results: dict) -> str:
    cases = [
        ("token n=10", lambda: compile_quiet(token_map(10, vocab_size=10)), lambda c: token_prompts(10, c)),
        ("token n=3", lambda: compile_quiet(token_map(3, vocab_size=10)), lambda c: token_prompts(3, c)),
        ("continuous 2->2 N=8", lambda: compile_quiet(continuous_approximator(2, 2, value_bound=4.0)),
         continuous_prompts),
    ]
    rows = []
    for name, build, prompts in cases:
        model = build()
        one = prompts(1)[0]
        many = np.concatenate(list(prompts(args.long_prompts)), axis=0)  # prompts back to back
        t_np = best_time(lambda: model(one, backend="numpy"), args.repeats)
        t_k = best_time(lambda: model(one, backend="kernel"), args.repeats)
        t_np_long = best_time(lambda: model(many, backend="numpy"), max(1, args.repeats // 2))
        t_k_long = best_time(lambda: model(many, backend="kernel"), args.repeats)
        agree = float(np.max(np.abs(model(many, backend="kernel") - model(many, backend="numpy"))))
        tps_k = len(many) / t_k_long
        rows.append([name, len(one), fmt(len(one) / t_np), fmt(len(one) / t_k), fmt(t_np / t_k),
                     len(many), fmt(len(many) / t_np_long), fmt(tps_k), fmt(t_np_long / t_k_long),
                     f"{agree:.1e}", fmt(REFERENCE[name]), fmt(tps_k / REFERENCE[name])])
        results.setdefault("a", []).append(dict(zip(
            ["program", "T", "numpy_tps", "kernel_tps", "ratio", "T_long", "numpy_tps_long", "kernel_tps_long",
             "ratio_long", "max_abs_diff", "reference_tps", "vs_reference"],
            [name, len(one), len(one) / t_np, len(one) / t_k, t_np / t_k, len(many), len(many) / t_np_long, tps_k,
             t_np_long / t_k_long, agree, REFERENCE[name], tps_k / REFERENCE[name]])))
    return table("(a) kernel vs numpy backend, linear_rnn, batch 1 (tokens/s)",
                 ["program", "T", "numpy", "kernel", "×", "T (prompts back to back)", "numpy", "kernel", "×",
                  "max |Δ|", "reference (compiled)", "kernel / reference"], rows)


# ------------------------------------------------------------------------------------------ (b)

def section_b(args, results: dict) -> str:
    import torch

    rows = []
    n = args.token_n
    xs_all = token_prompts(n, max(args.batches), seed=1)
    T = xs_all.shape[1]
    for target, conditional in (("lstm", "multiplicative"), ("gru", "multiplicative"), ("relu_rnn", "optimized")):
        model = compile_quiet(token_map(n, conditional=conditional, vocab_size=10), target=target,
                              activations="standard", t_max=T)
        module = model.to_torch().eval()
        for batch in args.batches:
            xs = np.ascontiguousarray(xs_all[:batch])
            xt = torch.from_numpy(xs)
            with torch.inference_mode():
                t_torch = best_time(lambda: module(xt), args.repeats)
                y_torch = module(xt).numpy()
            t_k = best_time(lambda: model(xs, backend="kernel"), args.repeats)
            y_k = model(xs, backend="kernel")
            diff = float(np.max(np.abs(y_torch - y_k)))
            answers_equal = bool(np.array_equal(np.rint(y_torch[:, -n:]), np.rint(y_k[:, -n:])))
            rows.append([target, model.summary().splitlines()[1].split("widest=")[0].strip(), batch,
                         fmt(batch * T / t_torch), fmt(batch * T / t_k), fmt(t_torch / t_k), f"{diff:.1e}",
                         "yes" if answers_equal else "NO"])
            results.setdefault("b", []).append({"target": target, "batch": batch, "torch_tps": batch * T / t_torch,
                                                "kernel_tps": batch * T / t_k, "ratio": t_torch / t_k,
                                                "max_abs_diff": diff, "same_answers": answers_equal})
    threads = torch.get_num_threads()
    return table(f"(b) kernel vs torch (float64, standard-mode weights via model.to_torch(); token program n={n}, "
                 f"T={T}; torch threads = {threads}, kernel threads automatic)",
                 ["target", "model", "batch", "torch tokens/s", "kernel tokens/s", "×", "max |Δ|",
                  "same answers"], rows)


# ------------------------------------------------------------------------------------------ (c)

def section_c(args, results: dict) -> str:
    from lsrl import _kernel as K

    if args.smoke:
        shapes = [(1, 1 << 8, 1 << 4), (2, 1 << 10, 4)]
    else:
        shapes = [(1, 1 << 12, 1 << 12), (8, 1 << 11, 1 << 10), (64, 1 << 14 if args.quick else 1 << 16, 4),
                  (1, 1 << 20 if args.quick else 1 << 22, 4)]
    rows = []
    rng = np.random.default_rng(0)
    for B, T, k in shapes:
        n = B * T * k
        u = rng.random((B, T, k))
        s = np.empty_like(u)
        a_t = rng.random((B, T, k))
        s0 = np.zeros((B, k))
        diag = rng.random(k)
        src2, dst2 = rng.random(n), np.empty(n)          # the diagonal scan moves 2n values (read u, write s)
        src3, dst3 = rng.random(3 * n // 2), np.empty(3 * n // 2)  # the selective scan moves 3n values
        t_copy2 = best_time(lambda: np.copyto(dst2, src2), args.repeats)
        t_copy3 = best_time(lambda: np.copyto(dst3, src3), args.repeats)
        out = {}
        for threads in (1, 0):
            out[("diag", threads)] = best_time(lambda: K.linear_scan_diag(diag, u, s0, out=s, num_threads=threads),
                                               args.repeats)
            out[("sel", threads)] = best_time(lambda: K.selective_scan(a_t, u, s0, out=s, num_threads=threads),
                                              args.repeats)
        gbs = 2 * n * 8 / t_copy2 / 1e9
        rows.append([f"({B}, {T}, {k})", f"{gbs:.1f}",
                     f"{t_copy2 / out[('diag', 1)]:.2f}", f"{t_copy2 / out[('diag', 0)]:.2f}",
                     f"{t_copy3 / out[('sel', 1)]:.2f}", f"{t_copy3 / out[('sel', 0)]:.2f}"])
        results.setdefault("c", []).append({"shape": [B, T, k], "copy_GBps": gbs,
                                            "diag_1thread": t_copy2 / out[("diag", 1)],
                                            "diag_auto": t_copy2 / out[("diag", 0)],
                                            "selective_1thread": t_copy3 / out[("sel", 1)],
                                            "selective_auto": t_copy3 / out[("sel", 0)]})
    return table(f"(c) scan throughput as a fraction of numpy.copyto on the same bytes (float64; copy is single-"
                 f"threaded; {os.cpu_count()} CPUs)",
                 ["(B, T, k)", "copy GB/s (r+w)", "diagonal, 1 thread", "diagonal, auto threads",
                  "selective, 1 thread", "selective, auto threads"], rows)


# ------------------------------------------------------------------------------------------ (d)

_STREAM_SCRIPT = textwrap.dedent("""
    import json, sys, warnings, numpy as np
    warnings.filterwarnings("ignore")
    import lsrl
    from lsrl.programs import token_map
    model = lsrl.compile(token_map(10, vocab_size=10))
    total, chunk, mode = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    rng = np.random.default_rng(0)
    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    list(model.stream([rng.integers(0, 10, size=(chunk, 1)).astype(float)], backend="kernel"))  # warm-up
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak RSS (VmHWM) to the current RSS
        reset = True
    except OSError:
        reset = False
    base = status("VmRSS")
    if mode == "stream":
        chunks = (rng.integers(0, 10, size=(chunk, 1)).astype(float) for _ in range(total // chunk))
        count = sum(len(y) for y in model.stream(chunks, backend="kernel"))
    else:
        xs = rng.integers(0, 10, size=(total, 1)).astype(float)
        count = len(model(xs, backend="kernel"))
    print(json.dumps({"tokens": count, "peak_increase": status("VmHWM") - base, "baseline": base, "reset": reset}))
""")


def stream_memory(total: int, chunk: int, mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", _STREAM_SCRIPT, str(total), str(chunk), mode],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def section_d(args, results: dict) -> str:
    model = compile_quiet(token_map(10, vocab_size=10))
    rng = np.random.default_rng(0)
    lengths = args.prompt_lengths
    rows = []
    for T in lengths:
        xs = rng.integers(0, 10, size=(T, 1)).astype(float)
        t = best_time(lambda: model(xs, backend="kernel"), args.repeats if T < 10**6 else 2)
        rows.append([f"{T:,}", fmt(T / t), f"{t * 1e3:.2f}"])
        results.setdefault("d", []).append({"T": T, "tokens_per_s": T / t})
    text = table("(d) token program n=10 (linear_rnn), batch 1, one call: tokens/s by prompt length",
                 ["prompt length", "tokens/s", "ms"], rows)
    total = args.stream_total
    mem_rows = []
    for mode, chunk in (("stream", total // 100), ("stream", total // 10), ("whole", total)):
        m = stream_memory(total, chunk, mode)
        mem_rows.append([mode if mode == "whole" else f"stream, chunks of {chunk:,}", f"{m['tokens']:,}",
                         f"{m['baseline'] / 2**20:.0f}",
                         f"{m['peak_increase'] / 2**20:.2f}" + ("" if m["reset"] else " (peak not reset)")])
        results.setdefault("d_memory", []).append({"mode": mode, "chunk": chunk, **m})
    text += table(f"(d) peak memory increase over the warmed-up process, {total:,} tokens (model.stream vs one call; "
                  f"the one call holds the whole input and output, 16 bytes per token)",
                  ["mode", "tokens", "RSS before (MiB)", "peak RSS increase (MiB)"], mem_rows)
    return text


# ------------------------------------------------------------------------------------------ (e)

def section_e(args, results: dict) -> str:
    from lsrl.runtime import executor

    model = compile_quiet(token_map(10, vocab_size=10))
    rng = np.random.default_rng(0)
    rows = []
    for batch, T in args.lane_cases:
        xs = rng.integers(0, 10, size=(batch, T, 1)).astype(float)
        auto = executor.plan_for(model.module).plan.shape_for(batch, T, 1, 0)
        row = [batch, T, f"{auto['batch_group']}×{auto['time_block']}"]
        for lanes in (1, 8, 32, 128, 512, 4096):
            t = best_time(lambda: executor.run(model.module, xs, num_threads=1, lanes=lanes), max(2, args.repeats // 2))
            row.append(fmt(batch * T / t))
            results.setdefault("e", []).append({"batch": batch, "lanes": lanes, "tokens_per_s": batch * T / t})
        rows.append(row)
    return table("(e) lanes per block (1 thread; token program n=10): tokens/s — 1 = step by step, "
                 "large = layer by layer over long stretches",
                 ["batch", "T", "automatic (batch group × time block)", "1", "8", "32", "128", "512", "4096"], rows)


# ------------------------------------------------------------------------------------------ (f)

def hf_runner(model, directory: str, dtype: str = "float32"):
    """The exported model run with transformers only, through its lsrl_io.json, in ``dtype``."""
    import torch
    import transformers

    model.to_hf(directory)
    with open(os.path.join(directory, "lsrl_io.json")) as f:
        io = json.load(f)
    dtype = getattr(torch, dtype)
    transformers.utils.logging.disable_progress_bar()
    hf = transformers.AutoModel.from_pretrained(directory, dtype=dtype).eval()
    weight = torch.tensor(io["readout"]["weight"], dtype=dtype)
    bias = torch.tensor(io["readout"]["bias"], dtype=dtype)

    def run(xs: np.ndarray) -> np.ndarray:
        emb = torch.zeros(xs.shape[0], xs.shape[1], io["hidden_size"], dtype=dtype)
        emb[..., io["input_slots"]] = torch.tensor(xs * io["input_scale"], dtype=dtype)
        with torch.inference_mode():
            return (hf(inputs_embeds=emb, use_cache=False).last_hidden_state @ weight.T + bias).numpy()
    return run


def section_f(args, results: dict) -> str:
    import tempfile

    import torch
    import transformers

    from lsrl.runtime import executor

    # one thread on both sides: on a shared 2-core machine a second torch thread waits on a busy core
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    os.environ["HF_HUB_OFFLINE"] = "1"
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    rows = []
    for n, batch in args.hf_cases:
        xs = np.ascontiguousarray(token_prompts(n, batch, seed=2))
        T = xs.shape[1]
        program = token_map(n, vocab_size=10)
        base = compile_quiet(program, target="linear_rnn", t_max=T)
        t_base = best_time(lambda: executor.run(base.module, xs, dtype=np.float32, num_threads=1), args.repeats)
        for target in ("hawk", "griffin", "mamba"):
            model = compile_quiet(program, target=target, activations="standard", t_max=T)
            with tempfile.TemporaryDirectory() as directory:
                run_hf = hf_runner(model, directory)
                # no warm-up call (HF builds nothing per model) and one call where one takes seconds to minutes
                t_hf, y_hf = np.inf, None
                for _ in range(1 if batch * T > 2000 or n > 3 or args.smoke else args.repeats):
                    t0 = time.perf_counter()
                    y_hf = run_hf(xs)
                    t_hf = min(t_hf, time.perf_counter() - t0)
            t_k = best_time(lambda: executor.run(model.module, xs, dtype=np.float32, num_threads=1), args.repeats)
            y_k = executor.run(model.module, xs, dtype=np.float32, num_threads=1)[0]
            diff = float(np.max(np.abs(y_hf - y_k)))
            same = bool(np.array_equal(np.rint(y_hf[:, -n:]), np.rint(y_k[:, -n:])))
            rows.append([target, n, T, len(model.module.ops) - 1, batch, fmt(batch * T / t_hf), fmt(batch * T / t_k),
                         fmt(t_hf / t_k), fmt(batch * T / t_base), f"{t_base / t_k:.2g}", f"{diff:.1e}",
                         "yes" if same else "NO"])
            results.setdefault("f", []).append({
                "target": target, "n": n, "T": T, "batch": batch, "hf_tps": batch * T / t_hf,
                "kernel_tps": batch * T / t_k, "ratio": t_hf / t_k, "linear_rnn_tps": batch * T / t_base,
                "max_abs_diff": diff, "same_answers": same})
    torch.set_num_threads(threads)
    return table(f"(f) kernel vs the Hugging Face model's forward on the same weights (float32, standard "
                 f"activations, token program; one thread each (torch and kernel); "
                 f"transformers {transformers.__version__})",
                 ["target", "n", "T", "blocks", "batch", "HF tokens/s", "kernel tokens/s", "×",
                  "linear_rnn kernel tokens/s", "target / linear_rnn time", "max |Δ| HF vs kernel", "same answers"],
                 rows)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repeats and shorter sequences")
    parser.add_argument("--only", default="a,b,c,d,e,f", help="comma-separated sections (default: all)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes and one repeat (CI: every section runs)")
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args(argv)
    args.repeats = 1 if args.smoke else 3 if args.quick else 7
    args.long_prompts = 2 if args.smoke else 20 if args.quick else 100
    args.token_n = 3 if args.smoke else 10
    args.batches = (1, 2) if args.smoke else (1, 64)
    args.prompt_lengths = [10**3] if args.smoke else [10**3, 10**4, 10**5] + ([] if args.quick else [10**6])
    args.stream_total = 10**4 if args.smoke else 10**5 if args.quick else 10**6
    args.hf_cases = ((3, 1),) if args.smoke else ((3, 1), (3, 64)) if args.quick else ((3, 1), (3, 64), (10, 1))
    args.lane_cases = ((1, 500), (2, 100)) if args.smoke else \
        ((1, 20000), (64, 1000)) if args.quick else ((1, 100000), (64, 4000))
    from lsrl import _kernel as K

    print(f"lsrl kernel benchmarks: numpy {np.__version__}, {os.cpu_count()} CPUs, kernel ISA {K.isa}, "
          f"sanitized={K.sanitized}")
    results: dict = {"cpus": os.cpu_count(), "isa": K.isa}
    sections = {"a": section_a, "b": section_b, "c": section_c, "d": section_d, "e": section_e, "f": section_f}
    for key in args.only.split(","):
        key = key.strip()
        t0 = time.perf_counter()
        print(sections[key](args, results), flush=True)
        print(f"\n({key}: {time.perf_counter() - t0:.0f} s)", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
