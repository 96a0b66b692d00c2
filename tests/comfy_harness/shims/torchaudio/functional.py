"""resample, the one torchaudio function ComfyUI's audio nodes call."""

import math
import sys

import torch
from _cpu_stub import make_lenient


def resample(waveform, orig_freq, new_freq, **_filter_options):
    """Resample along the last dim with scipy's polyphase filter.

    Same signature and output length (ceil(n * new / orig)) as torchaudio; the filter
    differs, so samples match torchaudio only approximately.
    """
    from scipy.signal import resample_poly

    orig_freq, new_freq = int(orig_freq), int(new_freq)
    if orig_freq == new_freq:
        return waveform
    g = math.gcd(orig_freq, new_freq)
    samples = waveform.detach().to("cpu", torch.float64).numpy()
    out = resample_poly(samples, new_freq // g, orig_freq // g, axis=-1)
    out = out[..., : math.ceil(new_freq * waveform.shape[-1] / orig_freq)]
    dtype = waveform.dtype if waveform.dtype.is_floating_point else torch.float32
    return torch.from_numpy(out.copy()).to(device=waveform.device, dtype=dtype)


make_lenient(sys.modules[__name__])
