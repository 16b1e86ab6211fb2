"""The privacy audit's figure: claimed epsilon against the audited lower bounds, AUROC and TPR at 1 % FPR.

Reads every ``SETTING/audit.json`` under the given folder (as ``crossfed audit --out`` writes
them, copied without the run files) and draws one group of bars per setting.

    python benchmarks/privacy_audit_figure.py docs/results/privacy-audit
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def main(folder: Path) -> Path:
    settings = sorted(p.parent for p in folder.glob("*/audit.json"))
    audits = [json.loads((s / "audit.json").read_text()) for s in settings]
    names = [s.name for s in settings]
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    width = 0.25
    positions = range(len(names))
    claimed = [a["epsilon_claimed"] if a["epsilon_claimed"] is not None else a["ceiling"] for a in audits]
    left.bar([x - width for x in positions], claimed, width, label="claimed ε (ceiling when non-private)", color="0.7")
    for shift, adversary in ((0, "coordinator"), (width, "model")):
        bounds = [a["adversaries"][adversary]["epsilon_lower_bound"] for a in audits]
        left.bar([x + shift for x in positions], bounds, width, label=f"audited ε ≥ ({adversary})")
    left.set_xticks(list(positions), names, rotation=20, ha="right")
    left.set_ylabel("ε")
    left.legend(fontsize=8)
    for shift, adversary in ((-width / 2, "coordinator"), (width / 2, "model")):
        right.bar(
            [x + shift for x in positions],
            [a["adversaries"][adversary]["auroc"] for a in audits],
            width,
            label=f"AUROC ({adversary})",
        )
        right.scatter(
            [x + shift for x in positions],
            [a["adversaries"][adversary]["tpr_at_1pct_fpr"] for a in audits],
            color="black",
            marker="x",
            zorder=3,
        )
    right.axhline(0.5, color="0.5", linewidth=0.8, linestyle="--")
    right.set_xticks(list(positions), names, rotation=20, ha="right")
    right.set_ylim(0, 1)
    right.set_ylabel("AUROC (bars), TPR at 1 % FPR (x)")
    right.legend(fontsize=8)
    figure.tight_layout()
    out = folder / "audit.png"
    figure.savefig(out, dpi=110)
    return out


if __name__ == "__main__":
    print(main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/results/privacy-audit")))
