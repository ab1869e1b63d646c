"""Writers of small data sets in each real on-disk layout and file format (nothing is downloaded):
the package's own stand-ins (:mod:`snnprune.data.standin`), and what tonic makes of the events."""

from __future__ import annotations

from snnprune.data.standin import (  # noqa: F401  (re-exported for the tests)
    CIFAR10_DVS_CLASSES,
    random_events,
    write_aedat4,
    write_cifar,
    write_cifar10_dvs,
    write_dvs_gesture,
    write_image_folder,
    write_nmnist,
    write_nmnist_bin,
)


def tonic_frames(x, y, t, p, sensor, **framing):
    """What tonic's ToFrame makes of these events: the reference for every event loader."""
    from tonic.io import make_structured_array
    from tonic.transforms import ToFrame

    return ToFrame(sensor_size=sensor, **framing)(make_structured_array(x, y, t, p))
