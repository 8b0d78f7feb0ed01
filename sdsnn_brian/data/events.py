"""Event-camera datasets (N-MNIST, DVS-Gesture) read from their published layouts through tonic.

Needs the ``events`` extra (``pip install -e ".[events]"``: tonic 1.7.0, and ``aedat`` for
AEDAT4 files).  Nothing is ever downloaded: the files must be on disk.

Layouts (``data_dir`` is ``--data-dir``; the dataset folder may also be ``data_dir`` itself)
---------------------------------------------------------------------------------------------
N-MNIST (Orchard et al. 2015; https://www.garrickorchard.com/datasets/n-mnist, the
``Train.zip``/``Test.zip`` archives, unpacked)::

    data_dir/NMNIST/Train/<digit>/<id>.bin      60,000 recordings
    data_dir/NMNIST/Test/<digit>/<id>.bin       10,000 recordings

Each ``.bin`` holds 5-byte events: x, y, then polarity (bit 7) and a 23-bit microsecond
timestamp (big-endian over the last three bytes); sensor 34 x 34, two polarities.

DVS-Gesture (Amir et al. 2017), in the preprocessed per-gesture layout tonic distributes
(``ibmGestureTrain.tar.gz``/``ibmGestureTest.tar.gz``, unpacked)::

    data_dir/DVSGesture/ibmGestureTrain/user01_fluorescent/<label>.npy    1,077 recordings
    data_dir/DVSGesture/ibmGestureTest/user24_fluorescent/<label>.npy       264 recordings

Each ``.npy`` is an ``(n, 4)`` integer array of events, columns x, y, polarity and time in
milliseconds; ``<label>`` is the gesture class 0..10; sensor 128 x 128, two polarities.

Frames
------
:class:`FrameSettings` turns a recording into ``T`` binary frames ``[T, 2, H, W]`` with
tonic's transforms, in this order: ``Denoise(filter_time)`` (optional), ``Downsample
(spatial_factor)`` (optional), ``ToFrame`` with ``n_time_bins=T`` or with a fixed
``time_window`` (frames from the first event on, the last ones empty if the recording is
short, cut after ``T`` windows).  Event counts are clipped to 1 (an input neuron spikes
at most once per step).  A dataset's frames are computed once and kept on disk
(:func:`frames_cache_dir`); the cache key holds the frame settings, the file list with
sizes and modification times, and this module's format version, so changing any of them
computes new frames.  ``dataset.images`` is then a memory-mapped ``[N, T, 2*H*W]`` uint8
array and ``dataset.labels`` the classes: what :class:`~sdsnn_brian.trainer.Trainer`
takes with ``Input((2, H, W), encoding=Direct(time_first=False))``.

Damaged files
-------------
A reader returns the recording or raises :class:`~sdsnn_brian.data.errors.CorruptDataError`
naming the file and what is wrong; it never returns a silently shortened array where the
format lets the cut be seen.

* N-MNIST ``.bin`` (read here, byte for byte what ``tonic.io.read_mnist_file`` returns for a
  valid file): the size must be a whole, non-zero number of 5-byte events, every event must
  lie on the 34 x 34 sensor (this rejects the ATIS overflow marker y = 240 too: a recording
  shorter than 2**23 us = 8.4 s never holds one; N-MNIST recordings last about 0.3 s) and
  timestamps must not decrease.  The format has no header and no checksum, so a cut between
  two events reads as a shorter recording, and a flipped byte that keeps x, y below 34 and
  the time order (a polarity bit, a low coordinate bit, a low timestamp bit) cannot be seen.
* AEDAT4 (through ``tonic.io.read_aedat4``): the file must start with the AEDAT4 signature;
  any decoding failure (a cut packet, an LZ4 or flatbuffer error, including the Rust panics
  ``aedat`` raises as ``BaseException``) becomes the error; events must lie on the sensor the
  file declares and be in time order.  Where the file has the closing packet table dv writes
  (the sample has), ``aedat`` reads up to the position the header gives for it, so a cut
  anywhere before it -- even between two packets -- is seen, and a cut inside the table leaves
  every event intact; a file without that table cut between two packets reads as a shorter
  recording.  The LZ4 frames dv writes carry no checksum, so a flip that decodes to other
  plausible events cannot be seen.
* DVS-Gesture ``.npy``: a file numpy cannot load becomes the error.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import CorruptDataError

__all__ = ["FrameSettings", "NMNIST", "DVSGesture", "EventDataset", "read_events", "read_nmnist_bin",
           "read_dvsgesture_npy", "read_aedat4", "write_nmnist_bin", "write_dvsgesture_npy",
           "write_synthetic_nmnist", "write_synthetic_dvsgesture", "frames_cache_dir", "DatasetNotFound",
           "CorruptDataError", "EVENT_DTYPE"]

#: Events as this module returns them (tonic's field names; t in microseconds).
EVENT_DTYPE = np.dtype([("x", np.int64), ("y", np.int64), ("t", np.int64), ("p", np.int64)])
CACHE_VERSION = "1"


class DatasetNotFound(FileNotFoundError):
    """The dataset's files are not where they were looked for."""


def _tonic():
    try:
        import tonic
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("event datasets need tonic: pip install -e '.[events]' (tonic==1.7.0, aedat)") from exc
    return tonic


# --------------------------------------------------------------------------- readers
NMNIST_EVENT_BYTES = 5
NMNIST_SIDE = 34
AEDAT4_SIGNATURE = b"#!AER-DAT4.0\r\n"
_RESTORE = "restore it from the dataset archive or a good copy"


def read_nmnist_bin(path) -> np.ndarray:
    """Events of one N-MNIST ``.bin`` file, checked (see "Damaged files" in the module doc).

    Raises :class:`CorruptDataError` naming the file when its size is not a whole number of
    5-byte events, when it holds no event, when an event lies outside the 34 x 34 sensor
    (this includes the ATIS overflow marker y = 240, which a recording shorter than 8.4 s
    never holds) or when a timestamp goes back.
    """
    path = Path(path)
    raw = np.fromfile(str(path), dtype=np.uint8)
    n, extra = divmod(raw.size, NMNIST_EVENT_BYTES)
    if extra:
        raise CorruptDataError(
            f"{path}: {raw.size} bytes is not a whole number of {NMNIST_EVENT_BYTES}-byte N-MNIST events "
            f"({n} events and {extra} bytes over); the file is cut or damaged: {_RESTORE}")
    if n == 0:
        raise CorruptDataError(f"{path}: empty, no events (every N-MNIST recording has some); the file is "
                               f"cut or damaged: {_RESTORE}")
    r = raw.reshape(n, NMNIST_EVENT_BYTES).astype(np.int64)
    x, y = r[:, 0], r[:, 1]
    outside = np.flatnonzero((x >= NMNIST_SIDE) | (y >= NMNIST_SIDE))
    if outside.size:
        i = int(outside[0])
        raise CorruptDataError(
            f"{path}: event {i} at x={int(x[i])}, y={int(y[i])} lies outside the {NMNIST_SIDE}x{NMNIST_SIDE} "
            f"N-MNIST sensor ({outside.size} such events); the file is damaged or is not an N-MNIST "
            f"recording: {_RESTORE}")
    t = ((r[:, 2] & 0x7F) << 16) | (r[:, 3] << 8) | r[:, 4]  # 23-bit microseconds
    back = np.flatnonzero(np.diff(t) < 0)
    if back.size:
        i = int(back[0]) + 1
        raise CorruptDataError(
            f"{path}: the timestamp of event {i} goes back from {int(t[i - 1])} to {int(t[i])} us "
            f"({back.size} such steps; N-MNIST timestamps never decrease and never wrap in a recording "
            f"shorter than 8.4 s); the file is damaged: {_RESTORE}")
    ev = np.empty(n, EVENT_DTYPE)
    ev["x"], ev["y"], ev["t"], ev["p"] = x, y, t, r[:, 2] >> 7
    return ev


def read_dvsgesture_npy(path) -> np.ndarray:
    """Events of one DVS-Gesture ``.npy`` file (columns x, y, p, t in ms; returned with t in us)."""
    try:
        raw = np.load(path)
    except FileNotFoundError:
        raise
    except Exception as exc:  # a cut or damaged .npy fails in numpy's reader in several ways
        raise CorruptDataError(f"{path}: not a readable .npy array ({type(exc).__name__}: {exc}); the file "
                               f"is cut or damaged: {_RESTORE}") from exc
    if raw.ndim != 2 or raw.shape[1] != 4:
        raise ValueError(f"{path}: expected an (n, 4) array of x, y, p, t events, got shape {raw.shape}")
    ev = np.empty(len(raw), EVENT_DTYPE)
    ev["x"], ev["y"], ev["p"] = raw[:, 0], raw[:, 1], raw[:, 2]
    ev["t"] = raw[:, 3].astype(np.int64) * 1000
    return ev


def read_aedat4(path) -> tuple[np.ndarray, tuple]:
    """Events of an AEDAT4 file (``tonic.io.read_aedat4``, needs ``aedat``) and the sensor size (W, H, 2).

    Raises :class:`CorruptDataError` naming the file when the file does not start with the
    AEDAT4 signature, when decoding fails anywhere (a cut packet, an LZ4 or flatbuffer error,
    a table offset past the end, no event stream), when an event lies outside the sensor the
    file declares or when a timestamp goes back.
    """
    path = Path(path)
    with open(path, "rb") as f:  # FileNotFoundError names the file
        head = f.read(len(AEDAT4_SIGNATURE))
    if head != AEDAT4_SIGNATURE:
        raise CorruptDataError(f"{path}: does not start with the AEDAT4 signature {AEDAT4_SIGNATURE!r}; the "
                               f"file is damaged or is not AEDAT4: {_RESTORE}")
    tonic = _tonic()
    import aedat

    try:
        raw = tonic.io.read_aedat4(str(path))
        streams = aedat.Decoder(str(path)).id_to_stream()
    except BaseException as exc:  # aedat's decoding errors include Rust panics, which are BaseException
        if isinstance(exc, (KeyboardInterrupt, SystemExit, GeneratorExit, MemoryError)):
            raise
        raise CorruptDataError(f"{path}: cannot be decoded as AEDAT4 ({type(exc).__name__}: {exc}); the file is "
                               f"cut or damaged: {_RESTORE}") from exc
    width = height = None
    event_ids = [i for i, st in streams.items() if st.get("type") == "events"]
    if event_ids:  # tonic reads the events stream with the lowest id
        stream = streams[min(event_ids)]
        width, height = stream.get("width"), stream.get("height")
    ev = np.empty(len(raw), EVENT_DTYPE)
    ev["x"], ev["y"], ev["t"] = raw["x"], raw["y"], raw["t"]
    ev["p"] = raw["p"].astype(np.int64)
    if len(ev) == 0:
        raise CorruptDataError(f"{path}: its event stream holds no events; the file is cut or damaged: {_RESTORE}")
    if width is None or height is None:
        width, height = int(ev["x"].max()) + 1, int(ev["y"].max()) + 1
    outside = np.flatnonzero((ev["x"] >= width) | (ev["y"] >= height))
    if outside.size:
        i = int(outside[0])
        raise CorruptDataError(
            f"{path}: event {i} at x={int(ev['x'][i])}, y={int(ev['y'][i])} lies outside the {width}x{height} "
            f"sensor the file declares ({outside.size} such events); the file is damaged: {_RESTORE}")
    back = np.flatnonzero(np.diff(ev["t"]) < 0)
    if back.size:
        i = int(back[0]) + 1
        raise CorruptDataError(
            f"{path}: the timestamp of event {i} goes back from {int(ev['t'][i - 1])} to {int(ev['t'][i])} us "
            f"({back.size} such steps; an AEDAT4 event stream is in time order); the file is damaged: {_RESTORE}")
    return ev, (int(width), int(height), 2)


def read_events(path) -> tuple[np.ndarray, tuple]:
    """``(events, sensor_size)`` of a recording, by extension: ``.bin`` (N-MNIST, 34x34),
    ``.npy`` (DVS-Gesture, 128x128) or ``.aedat4`` (size from the file)."""
    path = Path(path)
    if path.suffix == ".bin":
        return read_nmnist_bin(path), NMNIST.sensor_size
    if path.suffix == ".npy":
        return read_dvsgesture_npy(path), DVSGesture.sensor_size
    if path.suffix == ".aedat4":
        return read_aedat4(path)
    raise ValueError(f"{path}: unknown event file type {path.suffix!r} (.bin, .npy or .aedat4)")


# --------------------------------------------------------------------------- writers (the published formats)
def write_nmnist_bin(path, x, y, t_us, p) -> None:
    """Write events in the N-MNIST 5-byte format (timestamps below 2**23 us)."""
    x, y, t, p = (np.asarray(a, dtype=np.int64) for a in (x, y, t_us, p))
    if t.size and (t.min() < 0 or t.max() >= 2 ** 23):
        raise ValueError("N-MNIST timestamps must lie in [0, 2**23) microseconds")
    if x.size and (x.min() < 0 or x.max() > 255 or y.min() < 0 or y.max() > 255):
        raise ValueError("N-MNIST coordinates must fit in one byte")
    raw = np.empty((t.size, 5), np.uint8)
    raw[:, 0], raw[:, 1] = x, y
    raw[:, 2] = ((p != 0).astype(np.int64) << 7) | ((t >> 16) & 0x7F)
    raw[:, 3], raw[:, 4] = (t >> 8) & 0xFF, t & 0xFF
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    raw.tofile(str(path))


def write_dvsgesture_npy(path, x, y, p, t_ms) -> None:
    """Write events as a DVS-Gesture ``.npy`` (an (n, 4) array: x, y, p, t in ms)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    np.save(str(path), np.stack([np.asarray(a, dtype=np.int64) for a in (x, y, p, t_ms)], axis=1))


def _blob_events(rng, centre, size, n, duration, drift):
    """Events around a moving centre (class pattern) plus 10 % uniform noise."""
    W, H = size
    t = np.sort(rng.uniform(0, duration, n))
    frac = t / duration
    cx = centre[0] + drift[0] * frac + rng.normal(0, W / 16, n)
    cy = centre[1] + drift[1] * frac + rng.normal(0, H / 16, n)
    noise = rng.random(n) < 0.1
    cx[noise] = rng.uniform(0, W, noise.sum())
    cy[noise] = rng.uniform(0, H, noise.sum())
    x = np.clip(np.rint(cx), 0, W - 1).astype(np.int64)
    y = np.clip(np.rint(cy), 0, H - 1).astype(np.int64)
    p = (rng.random(n) < 0.5).astype(np.int64)
    return x, y, t, p


def _class_centre(c, n_classes, W, H):
    ang = 2 * np.pi * c / n_classes
    return (W / 2 + W / 4 * np.cos(ang), H / 2 + H / 4 * np.sin(ang)), ang


def write_synthetic_nmnist(root, n_train_per_class=3, n_test_per_class=1, events=1500, seed=0) -> Path:
    """Write a small N-MNIST in the published layout under ``root/NMNIST`` (class-dependent
    blobs, 34x34, about 300 ms, three saccade-like drifts) and return that folder."""
    rng = np.random.default_rng(seed)
    base = Path(root) / "NMNIST"
    for split, n in (("Train", n_train_per_class), ("Test", n_test_per_class)):
        for digit in range(10):
            centre, _ = _class_centre(digit, 10, 34, 34)
            for i in range(n):
                x, y, t, p = _blob_events(rng, centre, (34, 34), events, 300e3, (3, 3))
                write_nmnist_bin(base / split / str(digit) / f"{i:05d}.bin", x, y, np.rint(t).astype(np.int64), p)
    return base


def write_synthetic_dvsgesture(root, users_train=(1, 2), users_test=(24,), events=4000, seed=0,
                               lighting="fluorescent") -> Path:
    """Write a small DVS-Gesture in tonic's layout under ``root/DVSGesture`` (one recording of each
    of the 11 gestures per user: a blob moving in a class-dependent direction, 128x128, 1.5 s)."""
    rng = np.random.default_rng(seed)
    base = Path(root) / "DVSGesture"
    for folder, users in (("ibmGestureTrain", users_train), ("ibmGestureTest", users_test)):
        for user in users:
            for label in range(11):
                centre, ang = _class_centre(label, 11, 128, 128)
                drift = (24 * np.cos(ang + np.pi / 2), 24 * np.sin(ang + np.pi / 2))
                x, y, t, p = _blob_events(rng, centre, (128, 128), events, 1500.0, drift)
                write_dvsgesture_npy(base / folder / f"user{user:02d}_{lighting}" / f"{label}.npy", x, y, p,
                                     np.rint(t).astype(np.int64))
    return base


# --------------------------------------------------------------------------- frames
@dataclass(frozen=True)
class FrameSettings:
    """How recordings become binary frames (see the module doc).

    ``n_time_bins``: T frames spanning each recording (tonic ``ToFrame(n_time_bins=T)``), or
    ``time_window`` (microseconds) with ``steps`` = T frames of that length from the first
    event.  ``denoise``: tonic ``Denoise(filter_time)`` in microseconds (None: off).
    ``spatial_factor``: tonic ``Downsample(spatial_factor)`` (1: off).
    """

    n_time_bins: int | None = 20
    time_window: float | None = None
    steps: int | None = None
    denoise: float | None = None
    spatial_factor: float = 1.0

    def __post_init__(self):
        if (self.n_time_bins is None) == (self.time_window is None):
            raise ValueError("FrameSettings: give exactly one of n_time_bins and time_window")
        if self.time_window is not None and (self.steps is None or self.steps < 1 or self.time_window <= 0):
            raise ValueError("FrameSettings: a time_window (us, > 0) needs steps (the number of frames)")
        if self.n_time_bins is not None and self.n_time_bins < 1:
            raise ValueError(f"FrameSettings: n_time_bins must be >= 1, got {self.n_time_bins}")
        if not 0 < self.spatial_factor <= 1:
            raise ValueError(f"FrameSettings: spatial_factor must lie in (0, 1], got {self.spatial_factor}")
        if self.denoise is not None and self.denoise <= 0:
            raise ValueError(f"FrameSettings: denoise (filter time, us) must be > 0, got {self.denoise}")

    @property
    def T(self) -> int:
        return int(self.n_time_bins if self.n_time_bins is not None else self.steps)

    def frame_shape(self, sensor_size) -> tuple:
        """``(C, H, W)`` of the frames for a sensor of size ``(W, H, P)``."""
        W, H, P = sensor_size
        f = self.spatial_factor
        return (int(P), int(np.floor((H - 1) * f)) + 1, int(np.floor((W - 1) * f)) + 1)

    def key(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    def __call__(self, events, sensor_size) -> np.ndarray:
        """Binary frames ``[T, C, H, W]`` (uint8) of one recording."""
        tr = _tonic().transforms
        C, H, W = self.frame_shape(sensor_size)
        ev = events
        if self.denoise is not None and len(ev):
            ev = tr.Denoise(filter_time=self.denoise)(ev)
        if self.spatial_factor != 1 and len(ev):
            ev = tr.Downsample(spatial_factor=self.spatial_factor)(ev)
        size = (W, H, C)
        out = np.zeros((self.T, C, H, W), np.uint8)
        if len(ev) == 0:
            return out
        if self.n_time_bins is not None:
            frames = tr.ToFrame(sensor_size=size, n_time_bins=self.n_time_bins)(ev)
        else:
            t0 = float(ev["t"].min())
            frames = tr.ToFrame(sensor_size=size, time_window=self.time_window, include_incomplete=True,
                                start_time=t0, end_time=t0 + self.T * self.time_window)(ev)
        n = min(len(frames), self.T)
        out[:n] = np.asarray(frames[:n]) > 0
        return out


def frames_cache_dir(root=None) -> Path:
    """Where frames are cached: ``root``, else ``$SDSNN_EVENTS_CACHE``, else ``<cache_root>/events``."""
    if root is not None:
        return Path(root)
    env = os.environ.get("SDSNN_EVENTS_CACHE")
    if env:
        return Path(env)
    from ..device import cache_root

    return Path(cache_root()) / "events"


# --------------------------------------------------------------------------- datasets
class EventDataset:
    """Base of the event datasets: a list of recordings with labels, frames on demand.

    ``dataset[i]`` is ``(frames [T, C, H, W] uint8, label)``; ``len(dataset)`` the number of
    recordings; ``dataset.images`` / ``dataset.labels`` the whole (cached) set for the trainer.
    ``limit`` keeps that many recordings spread evenly over the sorted list (all classes).
    """

    name = "events"
    sensor_size: tuple = (0, 0, 0)
    n_classes = 0
    hint = ""

    def __init__(self, data_dir=None, train: bool = True, frames: FrameSettings | None = None,
                 cache_dir=None, limit: int | None = None, verbose: bool = False):
        self.train = bool(train)
        self.frames = frames if frames is not None else FrameSettings()
        self.root = self._find_root(data_dir)
        files, labels = self._scan(self.root)
        if not files:
            raise DatasetNotFound(self._missing_message(data_dir, f"no recordings under {self.root}"))
        order = np.argsort([str(f) for f in files], kind="stable")
        files = [files[i] for i in order]
        labels = [labels[i] for i in order]
        if limit is not None and limit < len(files):
            keep = np.unique(np.linspace(0, len(files) - 1, int(limit)).round().astype(int))
            files = [files[i] for i in keep]
            labels = [labels[i] for i in keep]
        self.files = files
        self._labels = np.asarray(labels, dtype=np.int64)
        self.cache_root = frames_cache_dir(cache_dir)
        self.verbose = verbose
        self._images = None

    # -- layout ------------------------------------------------------------------
    def _split_dirs(self, base: Path) -> list[Path]:  # pragma: no cover - per dataset
        raise NotImplementedError

    def _find_root(self, data_dir) -> Path:
        tried = []
        candidates = []
        if data_dir is not None:
            d = Path(data_dir).expanduser()
            candidates += [d / self.name, d]
        env = os.environ.get(f"SDSNN_{self.name.upper()}_DIR")
        if env:
            candidates.append(Path(env))
        for c in candidates:
            for split in self._split_dirs(c):
                tried.append(str(split))
                if split.is_dir():
                    return split
        raise DatasetNotFound(self._missing_message(data_dir, "looked for " + ", ".join(tried) if tried else
                                                    "no --data-dir given"))

    def _missing_message(self, data_dir, detail) -> str:
        return (f"{self.name} {'training' if self.train else 'test'} data not found ({detail}). "
                f"No download is attempted. {self.hint} Pass the folder holding it as --data-dir "
                f"(data_dir=) or set SDSNN_{self.name.upper()}_DIR.")

    def _scan(self, root: Path):  # pragma: no cover - per dataset
        raise NotImplementedError

    def read(self, index) -> np.ndarray:
        """The raw events of recording ``index``."""
        return read_events(self.files[index])[0]

    # -- access ------------------------------------------------------------------
    @classmethod
    def splits(cls, data_dir=None, frames: FrameSettings | None = None, train_limit: int | None = None,
               test_limit: int | None = None, cache_dir=None, verbose: bool = True):
        """``(train, test)`` with their frame caches built (or opened), and one line saying how many
        recordings, which frames and how long framing took.  Raises :class:`DatasetNotFound`."""
        train = cls(data_dir, train=True, frames=frames, cache_dir=cache_dir, limit=train_limit, verbose=verbose)
        test = cls(data_dir, train=False, frames=frames, cache_dir=cache_dir, limit=test_limit, verbose=verbose)
        t0 = time.perf_counter()
        _ = (train.images, test.images)
        if verbose:
            print(f"{len(train)} training and {len(test)} test recordings, frames {train.frame_shape} x "
                  f"{train.frames.T} ({time.perf_counter() - t0:.1f} s to frame or load)", flush=True)
        return train, test

    def __len__(self) -> int:
        return len(self.files)

    @property
    def frame_shape(self) -> tuple:
        return self.frames.frame_shape(self.sensor_size)

    @property
    def labels(self) -> np.ndarray:
        return self._labels

    def __getitem__(self, index):
        if self._images is not None:
            C, H, W = self.frame_shape
            return np.asarray(self._images[index]).reshape(self.frames.T, C, H, W), int(self._labels[index])
        return self.frames(self.read(index), self.sensor_size), int(self._labels[index])

    def cache_key(self) -> str:
        h = hashlib.sha256()
        h.update(f"{CACHE_VERSION}|{self.name}|{self.frames.key()}|{self.sensor_size}".encode())
        for f in self.files:
            st = os.stat(f)
            h.update(f"{f}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        return h.hexdigest()[:20]

    def cache_path(self) -> Path:
        split = "train" if self.train else "test"
        return self.cache_root / f"{self.name}-{split}-{len(self)}-{self.cache_key()}"

    @property
    def images(self) -> np.ndarray:
        """All frames ``[N, T, C*H*W]`` uint8 (memory-mapped from the cache; built on first use)."""
        if self._images is None:
            path = self.cache_path()
            if not (path / "complete").exists():
                self._build_cache(path)
            self._images = np.load(path / "frames.npy", mmap_mode="r")
        return self._images

    def _build_cache(self, path: Path) -> None:
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        tmp.mkdir(parents=True, exist_ok=True)
        C, H, W = self.frame_shape
        arr = np.lib.format.open_memmap(tmp / "frames.npy", mode="w+", dtype=np.uint8,
                                        shape=(len(self), self.frames.T, C * H * W))
        for i in range(len(self)):
            arr[i] = self.frames(self.read(i), self.sensor_size).reshape(self.frames.T, -1)
            if self.verbose and (i + 1) % 1000 == 0:
                print(f"{self.name}: {i + 1}/{len(self)} recordings framed", flush=True)
        arr.flush()
        del arr
        np.save(tmp / "labels.npy", self._labels)
        (tmp / "settings.json").write_text(json.dumps({"frames": dataclasses.asdict(self.frames),
                                                       "files": len(self), "dataset": self.name}))
        (tmp / "complete").write_text("ok")
        try:
            os.rename(tmp, path)
        except OSError:  # another process finished first: use its cache
            shutil.rmtree(tmp, ignore_errors=True)


class NMNIST(EventDataset):
    """N-MNIST from ``Train/<digit>/*.bin`` / ``Test/<digit>/*.bin`` (34x34, 2 polarities, 10 classes)."""

    name = "NMNIST"
    sensor_size = (34, 34, 2)
    n_classes = 10
    hint = ("Get Train.zip and Test.zip from https://www.garrickorchard.com/datasets/n-mnist "
            "(or tonic's mirror, https://data.mendeley.com/datasets/468j46mzdv) and unpack them as "
            "NMNIST/Train/<digit>/*.bin and NMNIST/Test/<digit>/*.bin.")

    def _split_dirs(self, base):
        return [base / ("Train" if self.train else "Test")]

    def _scan(self, root):
        files, labels = [], []
        for digit in range(10):
            d = root / str(digit)
            if d.is_dir():
                for f in sorted(d.glob("*.bin")):
                    files.append(f)
                    labels.append(digit)
        return files, labels


class DVSGesture(EventDataset):
    """DVS-Gesture from ``ibmGestureTrain/userNN_<lighting>/<label>.npy`` (128x128, 2 polarities, 11 classes)."""

    name = "DVSGesture"
    sensor_size = (128, 128, 2)
    n_classes = 11
    hint = ("Get ibmGestureTrain.tar.gz and ibmGestureTest.tar.gz (tonic's preprocessed DVS-Gesture, "
            "https://figshare.com/ndownloader/files/38022171 and .../38020584) and unpack them as "
            "DVSGesture/ibmGestureTrain/userNN_<lighting>/<label>.npy (and ibmGestureTest).")

    def _split_dirs(self, base):
        return [base / ("ibmGestureTrain" if self.train else "ibmGestureTest")]

    def _scan(self, root):
        files, labels = [], []
        for d in sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("user")):
            for f in sorted(d.glob("*.npy")):
                try:
                    label = int(f.stem)
                except ValueError:
                    continue
                if 0 <= label < self.n_classes:
                    files.append(f)
                    labels.append(label)
        return files, labels
