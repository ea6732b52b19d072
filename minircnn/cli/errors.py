"""What ``minircnn`` prints when something a user can fix goes wrong.

``explain(err)`` turns an exception into an exit status and one or two lines
``<what>, <what to do>``; ``cli.main`` prefixes ``minircnn <command>: error:``. An
exception it does not recognise is a bug in minircnn: it keeps its traceback.
``check_checkpoint`` and ``check_device`` run before any work so that a wrong file or
a missing GPU is reported in the first second, not after the proposals.
"""

from __future__ import annotations

import os

from minircnn.utils.errors import UserError

# Model classes by the kind of checkpoint they make, and the commands that take each.
_KINDS = {
    "FastRCNN": ("a Fast R-CNN detector checkpoint",
                 "`minircnn eval` and `minircnn detect` take it"),
    "FasterRCNN": ("a Faster R-CNN detector checkpoint (`minircnn train --proposals rpn`)",
                   "`minircnn eval` and `minircnn detect` take it"),
    "MiniResNet": ("a MiniResNet classifier checkpoint (from `minircnn pretrain`)",
                   "`minircnn finetune --pretrained` takes it"),
}
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")   # an .npz is a zip archive (non-empty, empty)


def explain(err: BaseException) -> tuple[int, str] | None:
    """(exit status, message) for an expected failure, None for a bug."""
    if isinstance(err, UserError):
        return err.exit_code, str(err)
    if isinstance(err, KeyboardInterrupt):
        return 130, "interrupted (nothing to resume), run the command again to finish it"
    if isinstance(err, FileNotFoundError):
        name = err.filename or err
        return 1, f"{name}: no such file or folder, check the path"
    if isinstance(err, PermissionError):
        return 1, f"{err.filename or err}: permission denied, choose a folder you can write to"
    if isinstance(err, MemoryError):
        return 1, "out of memory, use smaller settings (fewer images, proposals or --hidden)"
    if isinstance(err, FloatingPointError):
        return 1, str(err)
    if isinstance(err, OSError) and err.filename and err.strerror:   # e.g. a full disk
        return 1, f"{err.filename}: {err.strerror}, free space or choose another folder"
    if isinstance(err, (OSError, ValueError)):
        return 1, f"{err}, run again with --debug to see where it happened"
    return None


def check_device(device: str | None) -> None:
    """Refuse ``--device gpu`` up front when CuPy or a CUDA GPU is missing."""
    if device != "gpu":
        return
    from minircnn.backend import gpu_available

    if not gpu_available():
        raise UserError("--device gpu needs CuPy and a CUDA GPU and none was found",
                        "install minircnn[gpu] on a machine with an NVIDIA GPU "
                        "or use --device cpu")


def checkpoint_class(path) -> str:
    """The model class saved in checkpoint ``path``.

    Raises:
        UserError: no such file, not an .npz archive (a text file, a PNG...), or an
            archive without minircnn's meta.json; each names the file.
    """
    path = os.fspath(path)
    todo = "pass a .npz written by `minircnn train` (model.npz or checkpoint.npz)"
    if os.path.isdir(path):
        raise UserError(f"{path} is a folder, not a checkpoint file", todo)
    if not os.path.isfile(path):
        raise UserError(f"checkpoint {path}: no such file", todo)
    with open(path, "rb") as f:
        head = f.read(4)
    if head not in _ZIP_MAGIC:
        raise UserError(f"{path} is not a minircnn checkpoint (not an .npz archive)", todo)
    from minircnn.models.checkpoint import read_checkpoint

    try:                              # size and header checks first (models/checkpoint.py)
        return str(read_checkpoint(path, arrays=False).model_spec["class"])
    except (ValueError, KeyError, TypeError, OSError, EOFError) as e:
        raise UserError(f"{path} is not a readable minircnn checkpoint "
                        f"(truncated, corrupt or from another program: {e})", todo) from e


def check_checkpoint(path, *, wants: str, command: str) -> None:
    """Refuse a checkpoint of the wrong kind, saying what it is and which command takes it.

    Args:
        wants: the model class ``command`` needs ("FastRCNN" or "MiniResNet").
    """
    found = checkpoint_class(path)
    if found == wants or (wants, found) == ("FastRCNN", "FasterRCNN"):  # a detector too
        return
    kind, taker = _KINDS.get(found, (f"a {found} checkpoint", "no minircnn command takes it"))
    raise UserError(f"{path} is {kind}, not {_KINDS[wants][0]}; {taker}",
                    f"give `minircnn {command}` {_KINDS[wants][0]}")
