"""One retraining of a configuration, in a process of its own: the accuracy bench runs it twice on
the same config, values, epochs and seed, and compares the two test accuracies (issue: a
configuration retrained twice lands within 0.3 points).

python -m tests.bench.retrain_again CONFIG.yaml VALUES.json EPOCHS OUT.json [WEIGHTS]

WEIGHTS: the trial checkpoint the run's retraining started from (``retrain.warm_start``), if any.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main() -> None:
    from fmtune import config, training

    config_path, values_path, epochs, out = sys.argv[1:5]
    weights = Path(sys.argv[5]) if len(sys.argv) > 5 and sys.argv[5] else None
    cfg = config.load_resolved(Path(config_path))
    # A fixed number of epochs and no deadline: the plan must not depend on how fast this run is.
    cfg = cfg.model_copy(update={"retrain": cfg.retrain.model_copy(update={"max_epochs": int(epochs)})})
    values = json.loads(Path(values_path).read_text())
    _, record = training.retrain(cfg, values, cfg.load_dataset(), initial_weights=weights)
    Path(out).write_text(record.model_dump_json())


if __name__ == "__main__":
    main()
