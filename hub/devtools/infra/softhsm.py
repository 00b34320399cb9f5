"""The development key store: Debian's SoftHSM2 PKCS#11 token under ``state_dir/softhsm``.

``hub infra setup`` / ``up`` install the ``softhsm2`` package when it is missing (as root,
with apt-get, like PostgreSQL) and initialise the development token
(:func:`hub.kernel.token.ensure_dev_token`). Production uses its own HSM/KMS module
(``keystore.module``): nothing here runs then.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from hub.devtools.infra import InfraError
from hub.kernel.settings import Settings
from hub.kernel.token import TokenConfig, ensure_dev_token, softhsm_module


def ensure_installed() -> None:
    """Install Debian's ``softhsm2`` when its module or ``softhsm2-util`` is missing."""
    if softhsm_module() is not None and shutil.which("softhsm2-util"):
        return
    if not shutil.which("apt-get") or os.geteuid() != 0:
        raise InfraError(
            "SoftHSM2 (the development key store) is not installed; run as root "
            "(or: sudo apt-get install -y softhsm2), or set keystore.module to another PKCS#11 module"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", "softhsm2"]):
        result = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        if result.returncode != 0:
            raise InfraError(f"{' '.join(cmd)} failed:\n{(result.stdout + result.stderr)[-3000:]}")


def setup(settings: Settings) -> TokenConfig | None:
    """Development with the default module: install SoftHSM2 if needed and initialise the
    token; returns its configuration (None when an operator-chosen module is configured)."""
    if not settings.is_development or settings.keystore.module is not None:
        return None
    ensure_installed()
    return ensure_dev_token(settings)
