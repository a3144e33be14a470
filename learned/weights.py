"""Weight files of the keypoint net: save, load by path, and a clear error for a corrupt or mismatched file.

A weight file is a ``torch.save`` dict: ``format`` ("slam-keypoint-net"), ``format_version``, ``architecture``
(:class:`NetConfig` fields), ``state_dict`` and ``metadata`` (version, data, steps, metrics; see the model
card). It is loaded with ``weights_only=True``: no code runs from a weight file.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from slam.messages import DataError

from .model import KeypointNet, NetConfig

FORMAT = "slam-keypoint-net"
FORMAT_VERSION = 1
WEIGHTS_DIR = Path(__file__).parent / "weights"
DEFAULT_WEIGHTS = WEIGHTS_DIR / "keypoint_net_v2.pt"


def save_weights(net: KeypointNet, path: str | Path, metadata: dict | None = None, half: bool = False) -> Path:
    """Write ``net`` (unwrapped from DDP) as a weight file, atomically; ``half`` stores float16 (half the size;
    loading converts back to float32)."""
    path = Path(path)
    net = getattr(net, "module", net)
    state = {}
    for name, value in net.state_dict().items():
        value = value.detach().cpu().clone()
        state[name] = value.half() if half and value.is_floating_point() else value
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "architecture": net.config.as_dict(),
               "state_dict": state, "metadata": dict(metadata or {})}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def load_weights(path: str | Path | None = None, expected: NetConfig | None = None) -> tuple[KeypointNet, dict]:
    """The net stored in ``path`` (default: the shipped weights) in eval mode, and its metadata.

    ``expected``: the architecture the caller needs; a file of another one is an error. Any defect raises
    :class:`DataError` naming the file and the architecture it should hold.
    """
    path = Path(path) if path is not None else DEFAULT_WEIGHTS
    want = (expected or NetConfig()).describe()
    if not path.is_file():
        raise DataError(f"no such weight file (expected a {FORMAT} file holding {want})", path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for truncated zips, pickles, random bytes
        raise DataError(f"not a readable weight file, corrupt or truncated ({_reason(exc)}); expected a {FORMAT} "
                        f"file holding {want}", path) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise DataError(f"not a {FORMAT} weight file (no 'format': '{FORMAT}' entry); expected {want}", path)
    if payload.get("format_version") != FORMAT_VERSION:
        raise DataError(f"weight file format version {payload.get('format_version')!r} is not supported "
                        f"(this code reads version {FORMAT_VERSION})", path, field="format_version")
    try:
        config = NetConfig.from_dict(payload["architecture"])
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"bad architecture entry ({exc}); expected {want}", path, field="architecture") from None
    if expected is not None and config != expected:
        raise DataError(f"holds {config.describe()} but {want} was expected", path, field="architecture")
    state = payload.get("state_dict")
    if not isinstance(state, dict):
        raise DataError(f"no state_dict; expected the weights of {config.describe()}", path, field="state_dict")
    net = KeypointNet(config)
    _check_state(net, state, path)
    net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    return net.eval(), dict(payload.get("metadata") or {})


def _reason(exc: Exception) -> str:
    """The informative line of a torch.load error (its first lines are generic advice)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    specific = [line for line in lines if "Unpickler error" in line or "failed finding" in line.lower()]
    return ((specific or lines or [type(exc).__name__])[0])[:200]


def _check_state(net: KeypointNet, state: dict, path: Path) -> None:
    """Missing, unexpected, misshapen or non-finite tensors, all named in one error."""
    own = net.state_dict()
    problems = []
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing:
        problems.append(f"missing {', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}")
    if unexpected:
        problems.append(f"unexpected {', '.join(unexpected[:4])}{' ...' if len(unexpected) > 4 else ''}")
    for name in sorted(set(own) & set(state)):
        value = state[name]
        if not isinstance(value, torch.Tensor) or value.shape != own[name].shape:
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            problems.append(f"{name} has shape {shape}, expected {tuple(own[name].shape)}")
        elif value.is_floating_point() and not torch.isfinite(value).all():
            problems.append(f"{name} holds NaN or inf")
    if problems:
        raise DataError(f"weights do not fit {net.config.describe()}: {'; '.join(problems[:6])}", path,
                        field="state_dict")
