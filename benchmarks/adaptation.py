"""Adaptation cost of a trained model: what a device waits for, and what it downloads.

* generation (DUET): one device alone (p50 / p99 latency), and devices per second in large batches; the payload:
  bytes of one device's dynamic-layer weights (materialised), in fp32 and fp16;
* fine-tuning (the baseline, ``model: Finetune``): per device, in batches.

All timings run under ``torch.inference_mode`` except fine-tuning, which needs gradients.
"""

import time

import numpy as np
import torch

SINGLE_DEVICE_SAMPLES = 200
GENERATION_BATCH = 1024
FINETUNE_BATCH = 64


def _timed(function):
    start = time.perf_counter()
    function()
    if torch.cuda.is_available():
        torch.cuda.synchronize()  # CUDA kernels run asynchronously: the clock is read once they have finished
    return time.perf_counter() - start


def _rows(inputs, start, stop):
    return tuple(tensor[start:stop] for tensor in inputs)


def _device_inputs(model, devices):
    """``model`` in evaluation mode, and what each of ``devices`` (an Interaction, a row per device) uploads."""
    model.eval()
    return model.device_inputs(devices.to(next(model.parameters()).device))


def measure_generation(model, devices):
    """What generating its layers costs a device with ``model`` (a DUET), and what it downloads."""
    inputs = _device_inputs(model, devices)
    n_devices = len(inputs[0])
    with torch.inference_mode():
        model.personalised_parameters(*_rows(inputs, 0, 1))  # warm-up
        single = [
            _timed(lambda i=i: model.personalised_parameters(*_rows(inputs, i, i + 1)))
            for i in range(min(SINGLE_DEVICE_SAMPLES, n_devices))
        ]
        batched = sum(
            _timed(lambda s=s: model.personalised_parameters(*_rows(inputs, s, s + GENERATION_BATCH)))
            for s in range(0, n_devices, GENERATION_BATCH)
        )
        payload = model.personalised_parameters(*_rows(inputs, 0, 1))
    payload_values = sum(tensor.numel() for layer in payload for tensor in layer)
    return {
        "generation_ms_p50": 1000 * float(np.percentile(single, 50)),
        "generation_ms_p99": 1000 * float(np.percentile(single, 99)),
        "devices_per_s": n_devices / batched,
        "payload_bytes": 4 * payload_values,
        "payload_bytes_fp16": 2 * payload_values,
    }


def measure_finetuning(model, devices):
    """What tuning its dynamic layers costs a device with ``model`` (a Finetune), batched."""
    inputs = _device_inputs(model, devices)
    finetune_devices = min(len(inputs[0]), 4 * FINETUNE_BATCH)
    finetune = sum(
        _timed(lambda s=s: model.finetuned_parameters(*_rows(inputs, s, s + FINETUNE_BATCH)))
        for s in range(0, finetune_devices, FINETUNE_BATCH)
    )
    return {"finetune_ms_per_device": 1000 * finetune / finetune_devices}
