"""Worst gradient-check margin of the ResNet BasicBlock checks over many seeds.

    python scripts/gradcheck_margins.py --seeds 50

For each block configuration of tests/models/test_resnet.py and each seed, the margin is
THRESHOLD / max(gradient_error) over dx and every parameter gradient: how many times the
largest error could grow before the check fails. Prints the worst margin per
configuration and exits 1 if any is below --min-margin (default 10).
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "models"))

from test_resnet import BLOCK_CONFIGS, block_and_input, module_gradcheck  # noqa: E402

from minircnn.gradcheck import THRESHOLD  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=50)
    parser.add_argument("--min-margin", type=float, default=10.0)
    args = parser.parse_args()
    worst_overall = float("inf")
    for name, config in BLOCK_CONFIGS.items():
        margins = []
        for seed in range(args.seeds):
            block, x = block_and_input(*config, seed)
            errors = module_gradcheck(block, x, seed=seed)
            margins.append((THRESHOLD / max(max(errors.values()), 1e-300), seed,
                            max(errors, key=errors.get)))
        margin, seed, grad = min(margins)
        median = sorted(m for m, _, _ in margins)[len(margins) // 2]
        worst_overall = min(worst_overall, margin)
        print(f"{name:20s} worst margin {margin:8.1f}x over {args.seeds} seeds "
              f"(seed {seed}, d{grad}); median {median:.1f}x", flush=True)
    return 0 if worst_overall >= args.min_margin else 1


if __name__ == "__main__":
    sys.exit(main())
