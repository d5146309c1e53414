"""recbole-duet: DUET (WWW 2023) device-cloud parameter generation as a RecBole plugin.

The training side (``DUET``, ``run_recbole_duet``) needs torch and RecBole; the device runtime
(:mod:`recbole_duet.device`) must import without them. The package therefore imports its training API on
first use (module ``__getattr__``), installing RecBole's compatibility shims (:mod:`recbole_duet.compat`,
which imports RecBole) just before; the plugin's Config installs them too, whichever way it is reached.
So ``import recbole_duet.device`` loads numpy and onnxruntime only.
"""

from importlib import import_module

_LAZY_ATTRIBUTES = {"DUET": "recbole_duet.model", "run_recbole_duet": "recbole_duet.quick_start"}

__all__ = ["DUET", "run_recbole_duet"]
__version__ = "0.1.0"


def __getattr__(name):
    if name not in _LAZY_ATTRIBUTES:
        raise AttributeError(f"module 'recbole_duet' has no attribute '{name}'")
    import_module("recbole_duet.compat").install_compatibility()
    return getattr(import_module(_LAZY_ATTRIBUTES[name]), name)
