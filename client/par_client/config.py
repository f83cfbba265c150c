"""Where the collector is and which key to show it: options, then the environment, then a file.

The file (``$PAR_CONFIG``, else ``$XDG_CONFIG_HOME/par/config``, else
``~/.config/par/config``) holds ``name = value`` lines; ``#`` starts a comment::

    url = https://par.example.org
    api_key = par_...
    node_id = 1

It holds a key, so it must belong to the user and be readable by nobody else
(``chmod 600``), as ssh asks of its keys; otherwise it is refused.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from par_client.errors import UsageError

ENV_URL = "PAR_URL"
ENV_KEY = "PAR_API_KEY"
ENV_CONFIG = "PAR_CONFIG"
FILE_NAMES = ("url", "api_key", "node_id", "ca_bundle", "timeout")


@dataclass
class Settings:
    """What a command needs to reach the collector."""

    url: str
    api_key: str
    node_id: str | None = None
    ca_bundle: str | None = None
    verify: bool = True
    timeout: float = 300.0


def default_config_path() -> Path:
    if os.environ.get(ENV_CONFIG):
        return Path(os.environ[ENV_CONFIG])
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "par" / "config"


def read_config_file(path: Path, *, required: bool = False) -> dict[str, str]:
    """The settings in ``path``; empty when it does not exist (unless ``required``)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        if required:
            raise UsageError(f"config file {path} does not exist")
        return {}
    except OSError as exc:
        raise UsageError(f"cannot read config file {path}: {exc.strerror}")
    with os.fdopen(fd, encoding="utf-8") as fh:
        info = os.fstat(fh.fileno())
        check_private(path, info)
        text = fh.read()
    return parse_config(path, text)


def check_private(path: Path, info: os.stat_result) -> None:
    """A file holding a key is the user's own and readable by nobody else."""
    if not hasattr(os, "getuid"):
        return  # no owners nor modes to check (Windows)
    if info.st_uid != os.getuid():
        raise UsageError(f"config file {path} belongs to another user: it must be your own")
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        raise UsageError(
            f"config file {path} is open to others (mode {mode:04o}): it holds an API key, "
            f"run 'chmod 600 {path}'"
        )


def parse_config(path: Path, text: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or name not in FILE_NAMES:
            raise UsageError(
                f"{path} line {number}: expected 'name = value' with name one of {', '.join(FILE_NAMES)}"
            )
        values[name] = value.strip().strip("\"'")
    return values


def resolve(
    *,
    url: str | None,
    api_key: str | None,
    config: str | None,
    ca_bundle: str | None = None,
    insecure: bool = False,
    timeout: float | None = None,
) -> Settings:
    """Settings from the options given, else PAR_URL / PAR_API_KEY, else the config file."""
    path = Path(config).expanduser() if config else default_config_path()
    from_file = read_config_file(path, required=bool(config))
    url = url or os.environ.get(ENV_URL) or from_file.get("url")
    api_key = api_key or os.environ.get(ENV_KEY) or from_file.get("api_key")
    if not url:
        raise UsageError(f"no collector URL: set {ENV_URL}, pass --url, or put 'url = ...' in {path}")
    if not url.startswith(("http://", "https://")):
        raise UsageError(f"the collector URL must start with http:// or https://, not {url!r}")
    if not api_key:
        raise UsageError(f"no API key: set {ENV_KEY}, pass --api-key, or put 'api_key = ...' in {path}")
    api_key = api_key.strip()
    if not api_key.isascii() or not api_key.isprintable() or " " in api_key:
        raise UsageError("the API key has characters no key has (spaces, control or non-ASCII characters)")
    file_timeout = from_file.get("timeout")
    if timeout is None and file_timeout:
        try:
            timeout = float(file_timeout)
        except ValueError:
            raise UsageError(f"{path}: timeout must be a number of seconds, not {file_timeout!r}")
    return Settings(
        url=url.rstrip("/"),
        api_key=api_key,
        node_id=from_file.get("node_id"),
        ca_bundle=ca_bundle or from_file.get("ca_bundle"),
        verify=not insecure,
        timeout=timeout if timeout is not None else 300.0,
    )
