"""The all-layer HDF5 feature cache: format helpers and the reader.

Layout of `<corpus>/<model>.h5`:
    root attributes      format, format_version, model, source, revision, random_init,
                         transformers_version, sample_rate, frame_rate, num_layers, dim, dtype,
                         manifest_sha256, complete, layers, max_seconds, …
    ids      (N,)        utterance ids, str, in manifest order
    fingerprints (N,)    "<size>:<mtime_ns>:<hash of the first and last decoded second>" of each source
    lengths  (N,)        frames per utterance, int64
    pooled   (N, L, 2, D) float32 per-layer mean and std over time
    functionals (N, F), functional_names (F,)   utterance-level features (openSMILE caches only)
    features/<key>       (L, T, D) float16 (float32 for an utterance that overflows fp16), contiguous
    skipped/ids, skipped/reasons   utterances that could not be extracted, and why
`<key>` is the id percent-encoded (ids may contain '/').

Features and pooled rows carry Fletcher-32 checksums; before a read, an utterance's header is
checked against the index and the index against the file's size. A damaged (or forged) cache is
one CacheError naming the utterance, never an allocation of whatever a header declares.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

import h5py
import numpy as np

from ser.errors import CacheError
from ser.features.cache_chunks import ChunkIndex, open_blocks
from ser.features.memory_guard import format_size

FORMAT = "ser-cache"
FORMAT_VERSION = 1
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"  # the first bytes of every HDF5 file (no user block)
LOAD_THREADS = 2  # utterances read and checked at a time by load_all


def utterance_key(utt_id: str) -> str:
    """A reversible HDF5-safe dataset name for an utterance id."""
    return quote(utt_id, safe="").replace(".", "%2E")


def read_strings(dataset: h5py.Dataset) -> list[str]:
    return [str(s) for s in dataset.asstr()[()]]


def _attr(value):
    """h5py attributes as plain Python values."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _cause(error: BaseException) -> str:
    """The first line of an h5py error, without its low-level details."""
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text.split(" (", 1)[0][:200]


REDO_HINT = "re-extract it with the same `ser extract` command plus --overwrite"


def damaged(path: Path, what: str, error: BaseException) -> CacheError:
    """One line for a cache that cannot be read: which part, and that --overwrite redoes it."""
    return CacheError(f"{path} is damaged: {what} cannot be read ({_cause(error)})", REDO_HINT)


def _declared_problem(dataset: h5py.Dataset, expected: tuple[int, ...]) -> str | None:
    """What is wrong with a feature dataset's header (shape against the index, dtype, bytes held),
    from metadata alone: reading a forged shape would first allocate all it declares."""
    if dataset.shape != expected:
        return f"declare shape {dataset.shape}, the index says {expected}"
    if dataset.dtype not in (np.float16, np.float32):
        return f"are stored as {dataset.dtype}, not float16/float32"
    needed = int(np.prod(expected, dtype=object)) * dataset.dtype.itemsize
    held = dataset.id.get_storage_size()
    if held < needed:
        return f"hold {held} of the {needed} bytes their shape needs"
    return None


def read_attrs(path: Path) -> dict:
    """Root attributes of a cache file (raises CacheError if it is not one)."""
    try:
        with h5py.File(path, "r") as f:
            attrs = {key: _attr(value) for key, value in f.attrs.items()}
    except (OSError, RuntimeError, KeyError, ValueError) as error:
        if not _starts_as_hdf5(path):
            raise CacheError(f"{path} is not an HDF5 file", "point at a file written by `ser extract`") from None
        raise CacheError(f"{path} is not a readable HDF5 file ({_cause(error)})",
                         "run `ser extract` again with --overwrite") from None
    if attrs.get("format") != FORMAT:
        raise CacheError(f"{path} is not a ser feature cache", "point at a file written by `ser extract`")
    return attrs


def replaceable_by_overwrite(path: Path) -> bool:
    """Whether `--overwrite` may replace the file at `path`: a ser cache, or an HDF5 file too damaged
    to open (a damaged cache); never a readable HDF5 file of another format, nor any other file."""
    try:
        with h5py.File(path, "r") as f:
            return _attr(f.attrs.get("format")) == FORMAT
    except (OSError, RuntimeError, KeyError, ValueError):
        return _starts_as_hdf5(path)


def _starts_as_hdf5(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE
    except OSError:  # missing, a folder, unreadable
        return False


class CacheReader:
    """Reads a finished cache. The HDF5 handle opens lazily, once per process (fork/pickle safe).

    `layers` arguments index the stored layers (0 … num_layers − 1). `page_cache=False` reads the
    utterances' blocks past the OS page cache where the file system allows it (streamed training:
    training/streaming.py says why).
    """

    def __init__(self, path: str | os.PathLike, page_cache: bool = True):
        self.path = Path(path)
        self.page_cache = page_cache
        if self.path.is_dir():
            inside = sorted([*self.path.glob("*.h5"), *self.path.glob("*/*.h5")])  # cache/ or cache/<corpus>/
            twin = self.path.with_suffix(".h5")  # <model>.probe/ (the probe's results) sits beside <model>.h5
            raise CacheError(f"{self.path} is a folder, not a cache file",
                             f"pass one of its caches, e.g. {inside[0]}" if inside
                             else f"pass the cache beside it, {twin}" if twin.is_file()
                             else "run `ser extract --model M` first")
        if not self.path.is_file():
            raise CacheError(f"no feature cache at {self.path}", "run `ser extract --model M` first")
        self.attrs = read_attrs(self.path)
        if self.attrs.get("format_version") != FORMAT_VERSION:
            raise CacheError(
                f"{self.path} has cache format version {self.attrs.get('format_version')}, this ser reads {FORMAT_VERSION}",
                "re-extract with `ser extract --overwrite`",
            )
        if not self.attrs.get("complete"):
            raise CacheError(f"{self.path} is incomplete", "run the same `ser extract` command again to finish it")
        try:
            with h5py.File(self.path, "r") as f:
                self.ids = read_strings(f["ids"])
                lengths = f["lengths"][()]
                skipped = f.get("skipped")
                self.skipped = dict(zip(read_strings(skipped["ids"]), read_strings(skipped["reasons"]))) if skipped else {}
        except (OSError, RuntimeError, KeyError, ValueError) as error:
            raise damaged(self.path, "its index (ids, lengths, skipped)", error) from None
        if len(lengths) != len(self.ids):
            raise damaged(self.path, "its index (ids, lengths, skipped)", ValueError("ids and lengths differ in length"))
        self.lengths = {utt: int(n) for utt, n in zip(self.ids, lengths)}
        self._check_declared_size()
        self._row = {utt: row for row, utt in enumerate(self.ids)}
        self._file: h5py.File | None = None
        self._pid: int | None = None
        self._direct: tuple[ChunkIndex, int, int] | None = None  # (index, file descriptor, its process id)

    def _check_declared_size(self) -> None:
        """The index may not declare more frames than the file can hold (float16, its smallest
        dtype): a forged length would otherwise reach an allocation of that size."""
        frames = sum(self.lengths.values())
        negative = next((utt for utt, n in self.lengths.items() if n < 0), None)
        needed = frames * int(self.attrs.get("num_layers", 0)) * int(self.attrs.get("dim", 0)) * 2
        size = self.path.stat().st_size
        if negative is not None or needed > size:
            why = (f"utterance {negative!r} has {self.lengths[negative]} frames" if negative is not None else
                   f"its index declares {frames} frames ({format_size(needed)} of features), more than the "
                   f"{format_size(size)} file holds")
            raise CacheError(f"{self.path} is damaged: {why}", REDO_HINT)

    @property
    def fingerprints(self) -> dict[str, str]:
        """Id → fingerprint of its source audio when extracted ({} for caches made before them)."""
        try:
            group = self._h5()
            prints = read_strings(group["fingerprints"]) if "fingerprints" in group else []
        except (OSError, RuntimeError, KeyError, ValueError) as error:
            raise damaged(self.path, "its source fingerprints", error) from None
        return dict(zip(self.ids, prints))

    @property
    def num_layers(self) -> int:
        return int(self.attrs["num_layers"])

    @property
    def dim(self) -> int:
        return int(self.attrs["dim"])

    @property
    def frame_rate(self) -> float:
        return float(self.attrs["frame_rate"])

    def _h5(self) -> h5py.File:
        if self._file is None or self._pid != os.getpid():
            self._file = h5py.File(self.path, "r")
            self._pid = os.getpid()
        return self._file

    def _check_id(self, utt_id: str) -> None:
        if utt_id not in self._row:
            why = f" (skipped at extraction: {self.skipped[utt_id]})" if utt_id in self.skipped else ""
            raise CacheError(f"utterance {utt_id!r} is not in {self.path}{why}", "re-extract or drop it from the manifest")

    def _layer_index(self, layers) -> list[int] | None:
        if layers is None:
            return None
        index = [int(layer) for layer in layers]
        bad = [layer for layer in index if not 0 <= layer < self.num_layers]
        if bad:
            raise CacheError(f"layers {bad} are out of range: the cache holds {self.num_layers} layers")
        return index

    def _dataset(self, utt_id: str) -> h5py.Dataset:
        """An utterance's feature dataset, once its header agrees with the index and with the bytes
        it holds (CacheError naming it otherwise)."""
        dataset = self._h5()["features"][utterance_key(utt_id)]
        problem = _declared_problem(dataset, (self.num_layers, self.lengths[utt_id], self.dim))
        if problem:
            raise CacheError(f"{self.path} is damaged: the features of utterance {utt_id!r} {problem}", REDO_HINT)
        return dataset

    def _chunks(self) -> tuple[ChunkIndex, int]:
        """The direct-read index and a file descriptor of this process (built on first use)."""
        if self._direct is None or self._direct[2] != os.getpid():
            index = ChunkIndex(self._h5(), utterance_key)
            self._direct = (index, open_blocks(self.path, self.page_cache), os.getpid())
        return self._direct[:2]

    def _features(self, utt_id: str, layers: list[int] | None = None) -> np.ndarray:
        """The stored block (L', T, D) of one utterance; CacheError naming it if it cannot be read
        (a Fletcher-32 checksum mismatch included). One pread and a vectorised checksum where the
        block allows (cache_chunks.py), else h5py; thread-safe."""
        try:
            index, fd = self._chunks()
            block = index.read(fd, utt_id)  # (L, T, D) read-only, or None
            if block is not None:
                expected = (self.num_layers, self.lengths[utt_id], self.dim)
                if block.shape != expected:
                    raise CacheError(f"{self.path} is damaged: the features of utterance {utt_id!r} hold "
                                     f"{block.shape}, its index says {expected}", REDO_HINT)
                return block if layers is None else block[layers]
            dataset = self._dataset(utt_id)  # a forged header (more bytes than stored) lands here: checked
            if layers is None:
                return dataset[()]
            ordered = sorted(set(layers))
            block = dataset[ordered]  # (L', T, D), h5py needs increasing indices
            return block[[ordered.index(layer) for layer in layers]]
        except (OSError, RuntimeError, KeyError, ValueError) as error:
            raise damaged(self.path, f"the features of utterance {utt_id!r}", error) from None

    def block(self, utt_id: str, layers=None) -> np.ndarray:
        """Features of one utterance as stored (float16, or float32 where fp16 overflowed): (L, T, D);
        thread-safe (streamed batches read several at a time)."""
        self._check_id(utt_id)
        return self._features(utt_id, self._layer_index(layers))

    def file_order(self, ids: list[str]) -> list[int]:
        """Positions into `ids` in the order their blocks lie in the file (reads that go forward)."""
        return self._file_order(ids)

    def read(self, utt_id: str, layers=None) -> np.ndarray:
        """Features of one utterance as float32 (L, T, D)."""
        self._check_id(utt_id)
        return self._features(utt_id, self._layer_index(layers)).astype(np.float32, copy=False)

    def pooled(self, utt_id: str, layers=None) -> np.ndarray:
        """Per-layer mean and std over time: float32 (L, 2, D)."""
        self._check_id(utt_id)
        try:
            stats = self._h5()["pooled"][self._row[utt_id]]  # (L, 2, D)
        except (OSError, RuntimeError, KeyError, ValueError) as error:
            raise damaged(self.path, f"the pooled statistics of utterance {utt_id!r}", error) from None
        index = self._layer_index(layers)
        return stats if index is None else stats[index]

    @property
    def functional_names(self) -> list[str]:
        """Names of the utterance-level functionals (empty for caches that hold none)."""
        names = self._h5().get("functional_names")
        return read_strings(names) if names is not None else []

    def functionals(self, utt_id: str) -> np.ndarray:
        """The utterance-level functionals of an openSMILE cache: float32 (F,)."""
        self._check_id(utt_id)
        if "functionals" not in self._h5():
            raise CacheError(f"{self.path} holds no functionals ({self.attrs.get('model')} is not an openSMILE model)",
                             "extract with --model egemaps or --model compare")
        try:
            return self._h5()["functionals"][self._row[utt_id]]  # (F,)
        except (OSError, RuntimeError, KeyError, ValueError) as error:
            raise damaged(self.path, f"the functionals of utterance {utt_id!r}", error) from None

    def pooled_rows(self, ids, layer: int | None = None) -> np.ndarray:
        """Pooled statistics of many utterances in one read: float32 (N, L, 2, D), or (N, 2, D) for
        one `layer`. Never touches the frames."""
        ids = list(ids)
        for utt in ids:
            self._check_id(utt)
        index = None if layer is None else self._layer_index([layer])[0]
        try:
            stats = self._h5()["pooled"]
            block = stats[()] if index is None else stats[:, index]  # (N_all, L, 2, D) | (N_all, 2, D)
        except (OSError, RuntimeError, KeyError, ValueError) as error:
            for utt in self.ids:  # the read covered every row: name the first damaged one
                self.pooled(utt)
            raise damaged(self.path, "the pooled statistics", error) from None
        return block[[self._row[utt] for utt in ids]]

    def load_all(self, ids=None, layers=None, device="cpu", threads: int = LOAD_THREADS):
        """Every (or the given) utterance in one packed tensor (ΣT, L, D), float16 unless some
        utterance had to be stored in float32; read in file order by `threads` threads, only the
        requested layers copied out."""
        import torch

        from ser.features.packed import PackedFeatures

        ids = list(self.ids if ids is None else ids)
        for utt in ids:
            self._check_id(utt)
        index = self._layer_index(layers)
        num_layers = self.num_layers if index is None else len(index)
        lengths = np.array([self.lengths[utt] for utt in ids], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)])  # (N+1,)
        dtype = torch.float32 if self.attrs.get("float32_utterances", 0) else torch.float16
        frames = torch.empty((int(offsets[-1]), num_layers, self.dim), dtype=dtype)  # (ΣT, L, D)

        def place(row: int) -> None:
            self.pooled(ids[row])  # its checksum too (one small chunk): a damaged cache is never trained on
            block = self._features(ids[row], index)  # (L, T, D)
            frames[offsets[row] : offsets[row + 1]] = torch.from_numpy(block.transpose(1, 0, 2).copy())  # (T, L, D)

        with ThreadPoolExecutor(max(1, threads)) as pool:  # reads and checksums release the GIL
            list(pool.map(place, self._file_order(ids)))
        packed = PackedFeatures(ids, frames, torch.from_numpy(offsets))
        return packed.to(device) if str(device) != "cpu" else packed

    def _file_order(self, ids: list[str]) -> list[int]:
        """Positions into `ids` in the order their blocks lie in the file (sequential reads)."""
        index = self._chunks()[0]
        places = [index.place(utt) for utt in ids]
        return sorted(range(len(ids)), key=lambda row: -1 if places[row] is None else places[row].offset)

    def damage(self, verify: bool = False) -> dict[str, str]:
        """{utterance id: what is wrong} for every utterance that cannot be read: its feature
        header against the index (metadata only); `verify=True` also reads every feature chunk
        and pooled row, which checks their Fletcher-32 checksums (as long as reading the file)."""
        found: dict[str, str] = {}
        for utt in self.ids:
            try:
                if verify:
                    self.pooled(utt)
                    self._features(utt)
                else:
                    self._dataset(utt)
            except CacheError as error:
                found[utt] = error.message.split(" is damaged: ", 1)[-1]
            except (OSError, RuntimeError, KeyError, ValueError) as error:
                found[utt] = f"the features of utterance {utt!r} cannot be read ({_cause(error)})"
        return found

    def info(self) -> dict:
        """Attributes plus utterance count, frames, hours of audio and file size."""
        total_frames = int(sum(self.lengths.values()))
        return {
            **self.attrs,
            "utterances": len(self.ids),
            "skipped": len(self.skipped),
            "total_frames": total_frames,
            "hours": total_frames / self.frame_rate / 3600.0 if self.frame_rate > 0 else 0.0,  # text caches: tokens
            "file_bytes": self.path.stat().st_size,
            **({"functionals": len(self.functional_names)} if self.functional_names else {}),
        }

    def close(self) -> None:
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        if self._direct is not None and self._direct[2] == os.getpid():
            os.close(self._direct[1])
        self._file, self._direct = None, None

    def __enter__(self) -> "CacheReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_file"], state["_pid"], state["_direct"] = None, None, None  # h5py handles cannot be pickled
        return state
