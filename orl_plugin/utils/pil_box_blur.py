"""PIL's Gaussian blur as integer box filters: shared by the data pipeline's OpenCV blur and the batched one
(both layers import it; it imports neither)."""
import numpy as np

__all__ = ['pil_box_blur_weights']


def pil_box_blur_weights(sigma: np.ndarray, passes: int = 3):
    """Integer box weights of PIL's ``GaussianBlur(radius=sigma)`` (BoxBlur.c), per sample.

    PIL approximates the Gaussian by ``passes`` extended box filters (Gwosdek et al. 2011) of
    fractional radius ``r``: weight ``ww`` for the ``2 floor(r) + 1`` centre taps and ``fw`` for the two
    partial taps beside them, in units of ``2**-24``, reproduced here in C's float32 arithmetic.

    Returns:
        (radius int array, ww int64 array, fw int64 array)
    """
    f32 = np.float32
    sigma = np.asarray(sigma, dtype=f32)
    sigma2 = sigma * sigma / f32(passes)
    big_l = np.sqrt(12.0 * sigma2.astype(np.float64) + 1.0).astype(f32)
    small_l = np.floor((big_l.astype(np.float64) - 1.0) / 2.0).astype(f32)
    a = (f32(2) * small_l + f32(1)) * (small_l * (small_l + f32(1)) - f32(3) * sigma2)
    a = a / (f32(6) * (sigma2 - (small_l + f32(1)) * (small_l + f32(1))))
    radius_f = (small_l + a).astype(f32)
    radius = radius_f.astype(np.int64)  # C (int) cast of a non-negative float
    ww = (f32(1 << 24) / (radius_f * f32(2) + f32(1))).astype(np.int64)
    fw = ((1 << 24) - (radius * 2 + 1) * ww) // 2
    return radius, ww, fw
