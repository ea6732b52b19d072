"""Run folders: the settings a resumed run reads back, and what keeps two runs apart.

A run folder (``runs/shapes/`` by default) holds config.json, checkpoint.npz,
metrics.json, model.npz and two pictures. ``minircnn train --resume`` reads the
settings back from config.json; a hand-edited or foreign config.json must not steer
the run anywhere else, so only the settings of ``TrainConfig`` are read, each checked
against its range, and the proposal cache folder is never taken from the file.
"""

from __future__ import annotations

import json
import os

from minircnn.errors import UserError

# Settings a config.json may not choose: where files go is decided by the command line
# (--out, --cache-dir, MINIRCNN_CACHE), never by a file found in the run folder.
PATH_SETTINGS = ("cache_dir",)


def read_run_config(out_dir) -> dict:
    """The settings saved in ``out_dir/config.json``, without the path settings.

    Raises:
        UserError: no config.json (nothing to resume), or one that is not a JSON object.
    """
    path = os.path.join(os.fspath(out_dir), "config.json")
    if not os.path.isfile(path):
        raise UserError(f"--resume: {out_dir} holds no run (no config.json)",
                        f"start it with `minircnn train --out {out_dir}` without --resume")
    try:
        with open(path, encoding="utf-8") as f:
            saved = json.load(f)
    except (ValueError, UnicodeDecodeError) as e:
        raise UserError(f"--resume: {path} is not valid JSON ({e})",
                        "restore it, or start the run again with --overwrite") from e
    if not isinstance(saved, dict):
        raise UserError(f"--resume: {path} holds a {type(saved).__name__}, not the run's "
                        "settings", "restore it, or start the run again with --overwrite")
    return {k: v for k, v in saved.items() if k not in PATH_SETTINGS}
