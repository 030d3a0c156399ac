"""How fast is a rollback? ``tfrelease rollback`` as a whole process, and the switch inside it,
beside the cost of importing TensorFlow measured in the same run.

Set-up (not timed): a temporary home with two released versions of a small real SavedModel.
Each round rolls back (timed), then puts the newer version back through the registry (not
timed). No Prefect server is configured, so the command takes its direct path.

    python benchmarks/rollback_speed.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def prepare(home: Path) -> None:
    """Two released versions of a real (small) SavedModel under ``home``."""
    import numpy as np

    from core.settings import TrainingParams, get_settings
    from registry.store import RegistryStore
    from tasks.checksum import file_sha256
    from tasks.export import export_saved_model
    from tasks.serving import sync_serving_config
    from tasks.train import train_model
    from tasks.training_data import ArrayData

    settings = get_settings()
    store = RegistryStore.open(settings.registry_url)
    rng = np.random.default_rng(0)
    features, labels = rng.uniform(0, 16, (200, 64)).astype("float32"), np.arange(200) % 10
    model = train_model(ArrayData(features, labels), TrainingParams(epochs=1), 10, "pixels")
    for _ in range(2):
        record = store.allocate_version("digits", actor="benchmark", reason="set-up")
        target = settings.model_store / "digits" / str(record.version)
        export_saved_model(model, target, "pixels")
        store.complete_registration(
            "digits", record.version, path=str(target), saved_model_sha256=file_sha256(target / "saved_model.pb"),
            metrics={"accuracy": 0.5}, hyperparameters={}, data_fingerprint="0" * 64, batches=[], baseline_version=None,
            baseline_metrics=None, git_commit=None, python_version="3.11", tensorflow_version="-", keras_version="-",
            actor="benchmark",
        )
        store.promote("digits", record.version, actor="benchmark", reason="set-up")
    sync_serving_config(store, settings.model_store, settings.serving_config_path)


def restore(store, settings) -> None:
    """Put version 2 back in production (untimed), as a release would."""
    from tasks.serving import sync_serving_config

    store.promote("digits", 2, actor="benchmark", reason="reset")
    sync_serving_config(store, settings.model_store, settings.serving_config_path)


def timed(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, env=env, cwd=ROOT, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as home:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API", "TFRELEASE_"))}
        env |= {"TFRELEASE_HOME": home, "TF_CPP_MIN_LOG_LEVEL": "3"}
        os.environ.update({"TFRELEASE_HOME": home, "TF_CPP_MIN_LOG_LEVEL": "3"})
        prepare(Path(home))

        from core.settings import get_settings
        from registry.store import RegistryStore
        from tasks.rollback import rollback_model

        settings = get_settings()
        store = RegistryStore.open(settings.registry_url)
        tfrelease = str(Path(sys.executable).with_name("tfrelease"))
        command, switch, tf_import, python = [], [], [], []
        for _ in range(args.rounds):
            command.append(timed([tfrelease, "rollback", "--reason", "benchmark"], env))
            restore(store, settings)
            start = time.perf_counter()
            rollback_model(store, settings, "digits", actor="benchmark", reason="benchmark")
            switch.append(time.perf_counter() - start)
            restore(store, settings)
            tf_import.append(timed([sys.executable, "-c", "import tensorflow"], env))
            python.append(timed([sys.executable, "-c", "pass"], env))

    def ms(values: list[float]) -> str:
        return f"{statistics.median(values) * 1000:8.0f} ms"

    print(f"{args.rounds} rounds, medians of wall time")
    print(f"  `tfrelease rollback` (whole process)   {ms(command)}")
    print(f"  rollback switch inside it            {ms(switch)}")
    print(f"  `python -c 'import tensorflow'`      {ms(tf_import)}")
    print(f"  `python -c pass` (interpreter start) {ms(python)}")
    print(f"  rollback command / TensorFlow import: {statistics.median(command) / statistics.median(tf_import):.2f}")


if __name__ == "__main__":
    main()
