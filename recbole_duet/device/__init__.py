"""The device side of a deployed DUET model: onnxruntime and numpy only, no torch, no RecBole.

* :mod:`recbole_duet.device.runtime`: :class:`DeviceModel` (scores a history with a payload) and
  :func:`request_parameters` (asks the service for one), re-exported here::

      from recbole_duet.device import DeviceModel, request_parameters

* :mod:`recbole_duet.device.request_policy`: when a device asks the service again;
* :mod:`recbole_duet.device.bundle`: the bundle and payload format, which the exporter
  (:mod:`recbole_duet.deploy`) writes and the service (:mod:`recbole_duet.serving`) reads too.

Nothing in this package imports torch, RecBole or another part of ``recbole_duet`` (whose ``__init__`` imports its
training API lazily for that reason); a test checks ``sys.modules``.
"""

from recbole_duet.device.runtime import DeviceModel, ServiceError, request_parameters

__all__ = ["DeviceModel", "ServiceError", "request_parameters"]
