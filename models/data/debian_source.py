"""Files from a Debian source package, fetched with apt itself and pinned by sha256.

    download_source_file("libfprint", "1:1.94.9-1", "trixie", "libfprint_1.94.9.orig.tar.xz", SHA, cache)

apt-get runs with a private configuration under `cache` (its own package lists and a deb-src list of one suite),
so the machine's apt state is left alone; the archive it asks is the one this machine's apt already uses
(the first URIs line of its deb822 sources that is not a security archive). The file's sha256 must equal the
pinned one before it is returned. Training and evaluation only: the gateway never imports this.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

SOURCES = (Path("/etc/apt/sources.list.d"), Path("/etc/apt/sources.list"))
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def archive_uri() -> str:
    """The Debian archive this machine's apt uses."""
    files = sorted(SOURCES[0].glob("*.sources")) + [SOURCES[1]]
    for f in files:
        if not f.is_file():
            continue
        for line in f.read_text().splitlines():
            words = line.split()
            if len(words) >= 2 and words[0] == "URIs:" and "security" not in words[1]:
                return words[1]
            if len(words) >= 3 and words[0] == "deb" and "security" not in words[1]:
                return words[1]
    raise SystemExit("no Debian archive in this machine's apt sources")


def download_source_file(package: str, version: str, suite: str, filename: str, sha256: str, cache: Path) -> Path:
    """`filename` of source package `package`=`version` (from `suite`), checked against `sha256`."""
    cache = cache.resolve()  # apt runs inside it and reads its configuration by path
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / filename
    if not path.exists():
        apt = cache / "apt"
        for d in ("parts", "lists/partial", "cache/archives/partial"):
            (apt / d).mkdir(parents=True, exist_ok=True)
        (apt / "parts" / "src.sources").write_text(
            f"Types: deb-src\nURIs: {archive_uri()}\nSuites: {suite}\nComponents: main\nSigned-By: {KEYRING}\n")
        (apt / "apt.conf").write_text(
            f'Dir::Etc::SourceList "/dev/null";\nDir::Etc::SourceParts "{apt / "parts"}";\n'
            f'Dir::State::Lists "{apt / "lists"}";\nDir::Cache "{apt / "cache"}";\n')
        env = os.environ | {"APT_CONFIG": str(apt / "apt.conf")}
        subprocess.run(["apt-get", "-q", "update"], env=env, check=True, stdout=subprocess.DEVNULL)
        # Only `filename` is needed: apt also asks for the .dsc and the Debian patches, and exits non-zero when
        # the archive does not serve them, so its verdict is the file itself.
        got = subprocess.run(["apt-get", "-q", "source", "--download-only", f"{package}={version}"], env=env,
                             cwd=cache, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if not path.exists():
            raise SystemExit(f"apt-get source {package}={version} did not give {filename}:\n{got.stderr}")
    if sha256_of(path) != sha256:
        raise SystemExit(f"{path}: sha256 mismatch, refusing to use it")
    return path
