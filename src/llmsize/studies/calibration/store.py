"""Where calibration refits are stored, and how they are run.

Each refit's result is a JSON file named by its hold-out (or SBC batch) and a hash of
everything it depends on (:func:`run_key`: hypothesis, data, sampler settings, llmsize
version and model code), so a resumed run skips what is done and never mixes fits of
another model. :func:`run_parallel` runs the refits on a Dask cluster and writes each
result as it arrives.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

from llmsize.outputs.io import write_text_atomic
from llmsize.studies.calibration.holdouts import Holdout


def run_key(hyp_json: str, data_digest: str, settings: dict) -> str:
    """Short hash of everything a stored fit depends on, so a resume never mixes
    fits of another hypothesis, dataset, sampler setting, llmsize version or model
    code (:func:`llmsize.outputs.provenance.model_code_digest`).
    """
    import hashlib

    from llmsize.outputs.provenance import model_code_digest
    from llmsize.version import __version__

    blob = json.dumps(
        [hyp_json, data_digest, settings, __version__, model_code_digest()], sort_keys=True
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def result_path(out_dir: Path, holdout: Holdout | str, variant: str, key: str = "") -> Path:
    """Where one refit is stored: named by the hold-out and a hash of its definition,
    in a folder named by ``key`` (:func:`run_key`).
    """
    name = holdout.name if isinstance(holdout, Holdout) else holdout
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:80]
    tag = f"__{holdout.digest()[:10]}" if isinstance(holdout, Holdout) else ""
    return out_dir / (f"fits-{key}" if key else "fits") / f"{safe}__{variant}{tag}.json"


def run_parallel(
    tasks: list[tuple[Callable, tuple, Path]],
    *,
    scheduler: str | None = None,
    workers: int = 2,
    progress: bool = True,
) -> None:
    """Run ``fn(*args)`` for each task on Dask; write each result to its path as it arrives.

    Tasks whose result file exists are skipped, so an interrupted run resumes.
    """
    todo = [t for t in tasks if not t[2].exists()]
    if not todo:
        return
    from distributed import Client, LocalCluster, as_completed
    from tqdm import tqdm

    if scheduler:
        client = Client(scheduler)
        cluster = None
    else:
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.ERROR,
        )
        client = Client(cluster)
    try:
        futures = {client.submit(fn, *args, pure=False): path for fn, args, path in todo}
        bar = tqdm(
            total=len(tasks), initial=len(tasks) - len(todo), disable=not progress, unit="fit"
        )
        for fut in as_completed(futures):
            path = futures[fut]
            result = fut.result()
            path.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(path, json.dumps(result))
            bar.update(1)
        bar.close()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
