"""A float64 standard-mode model converted to float32 in torch: the export against ``nn.GRU`` run as-is.

    python benchmarks/torch_float32.py            # the table (markdown) on stdout
    python benchmarks/torch_float32.py --smoke    # n = 3 only, two prompts (CI: the script works)

The token program (multiplicative conditional, 20 entries, vocabulary 10) compiled for the standard LSTM and GRU
in float64, then run in float32 the ways a user does: the float32 kernel (``model(xs, dtype="float32")``),
``model.to_torch().float()`` (the export: a GRU layer that holds state runs its ``nn.GRU`` parameters through
the kernel's update, docs/targets.md "Exports") and, for the GRU, the same parameters in ``nn.GRU`` in every
layer (what the export did before).  ``wrong`` = answer tokens that round wrong, ``max error`` = the largest
|output − answer| over them, ``time`` = the GRU's torch forward relative to the ``nn.GRU`` one, in this process
(one thread).
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

try:
    import lsrl  # noqa: F401
except ImportError:  # a development checkout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "python"))

import lsrl  # noqa: E402
from lsrl.programs import draw_queries, random_token_map, token_answer, token_map, token_prompt  # noqa: E402
from lsrl.targets.shared.torch_export import CellLayer  # noqa: E402


def prompts(n: int, batch: int, seed: int = 11) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    mapping = random_token_map(n, 20, 10, rng)
    queries = draw_queries(mapping, batch, rng)
    return (np.stack([token_prompt(q, mapping) for q in queries]),
            np.array([token_answer(q, mapping) for q in queries], dtype=float))


def forward(module, xs: np.ndarray) -> tuple[np.ndarray, float]:
    x = torch.from_numpy(xs.astype(np.float32))
    with torch.no_grad():
        module(x)  # warm-up
        start = time.perf_counter()
        y = module(x)
        return y.double().numpy(), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="n = 3 and two prompts (CI)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    print("| target | n | layers | executor | wrong | max error | time |")
    print("|---|---|---|---|---|---|---|")
    for n in (3,) if args.smoke else (3, 10):
        xs, answers = prompts(n, 2 if args.smoke else 4)
        for target in ("lstm", "gru"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = lsrl.compile(token_map(n, "multiplicative", vocab_size=10), target, activations="standard",
                                     t_max=xs.shape[1])
            export = model.to_torch().float()
            runs = {"float32 kernel": (model(xs, backend="kernel", dtype="float32"), None)}
            y, t_export = forward(export, xs)
            held = sum(type(layer).__name__ != "CellLayer" for layer in export.layers)
            runs[f"to_torch().float() ({held} layers through the kernel's update)"] = (y, t_export)
            if target == "gru":
                plain = model.to_torch()
                plain.layers = torch.nn.ModuleList(
                    [CellLayer(layer.cell, op) for layer, op in zip(plain.layers, model.module.ops[1:-1])])
                runs["nn.GRU in every layer"] = forward(plain.float(), xs)
            for name, (out, seconds) in runs.items():
                got = out[:, -n:, 0]
                wrong = float(np.mean(np.round(got) != answers))
                ratio = f"{seconds / runs['nn.GRU in every layer'][1]:.2f}×" if target == "gru" and seconds else "—"
                print(f"| {target} | {n} | {len(export.layers)} | {name} | {wrong:.0%} | "
                      f"{np.max(np.abs(got - answers)):.2g} | {ratio} |")
    print(f"\n({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
