"""Worst gradient-check margin of the ResNet BasicBlock checks over many seeds.

    python scripts/gradcheck_margins.py --seeds 50 [--checks blocks|layers|all]

For each block configuration of tests/models/test_resnet.py and each seed, the margin is
THRESHOLD / max(gradient_error) over dx and every parameter gradient: how many times the
largest error could grow before the check fails. Prints the worst margin per
configuration and exits 1 if any is below --min-margin (default 10). ``--checks layers``
measures every case of minircnn/gradcheck/cases.py (``minircnn gradcheck --seed N``) the same way.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "models"))

from test_resnet import BLOCK_CONFIGS, block_and_input, module_gradcheck  # noqa: E402

from minircnn.gradcheck import THRESHOLD  # noqa: E402
from minircnn.gradcheck.cases import LAYER_CASES, run_case  # noqa: E402


def _report(name, margins, seeds):
    """Print the worst and median (margin, seed, gradient) of one check; return the worst."""
    margin, seed, grad = min(margins)
    median = sorted(m for m, _, _ in margins)[len(margins) // 2]
    print(f"{name:26s} worst margin {margin:8.1f}x over {seeds} seeds "
          f"(seed {seed}, d{grad}); median {median:.1f}x", flush=True)
    return margin


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=50)
    parser.add_argument("--min-margin", type=float, default=10.0)
    parser.add_argument("--checks", choices=("blocks", "layers", "all"), default="blocks")
    args = parser.parse_args()
    worst = []
    for name, config in BLOCK_CONFIGS.items() if args.checks != "layers" else []:
        margins = []
        for seed in range(args.seeds):
            block, x = block_and_input(*config, seed)
            errors = module_gradcheck(block, x, seed=seed)
            margins.append((THRESHOLD / max(max(errors.values()), 1e-300), seed,
                            max(errors, key=errors.get)))
        worst.append(_report(f"BasicBlock {name}", margins, args.seeds))
    for case in LAYER_CASES if args.checks != "blocks" else []:
        margins = []
        for seed in range(args.seeds):
            errors = run_case(case, seed).errors
            margins.append((case.threshold / max(max(errors.values()), 1e-300), seed,
                            max(errors, key=errors.get)))
        worst.append(_report(case.name, margins, args.seeds))
    worst_overall = min(worst)
    return 0 if worst_overall >= args.min_margin else 1


if __name__ == "__main__":
    sys.exit(main())
