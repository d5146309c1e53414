"""recbole-duet: DUET (WWW 2023) device-cloud parameter generation as a RecBole plugin."""

from recbole_duet.compat import install_compatibility

install_compatibility()

from recbole_duet.model import DUET  # noqa: E402  (RecBole must see the numpy aliases first)
from recbole_duet.quick_start import run_recbole_duet  # noqa: E402

__all__ = ["DUET", "run_recbole_duet"]
__version__ = "0.1.0"
