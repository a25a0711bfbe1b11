"""MovieLens-100K (Harper & Konstan, ACM TiiS 5(4):19, 2015) as a watch log.

Ratings become watches: ``(user, video=item, timestamp, watch_time=rating)``, the rating standing
in as the example weight. Files are read from `data_dir`, or from the Keras cache
(``$KERAS_HOME/datasets/ml-100k``, default ``~/.keras/datasets/ml-100k``), or downloaded from
GroupLens with `keras.utils.get_file`. Without network access, place ``u.data`` and ``u.user``
(and ``u.item`` or ``items.tsv``) in the cache folder yourself, or run the project's
``shared/data/get-movielens-100k`` script. The MovieLens terms allow research use and forbid
redistribution: do not commit or ship the files.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from keras_yt.data.io import WATCH_DTYPE

ORIGIN = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
ZIP_MD5 = "0e33842e24a9c977be4e0107933c0723"
FILE_MD5 = {
    "u.data": "6e47046882bad158b0efbb84cd5cb987",
    "u.user": "1b53539edc13caad0282c8500608a319",
}
GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "War", "Western",
)
"""The 19 MovieLens genres, in the order of the ``u.item`` flags."""

USER_DTYPE = np.dtype(
    [("id", "<i8"), ("age", "<i4"), ("gender", "U1"), ("occupation", "U16"), ("zip", "U10"),
     ("gender_id", "<i4"), ("occupation_id", "<i4")]
)
VIDEO_DTYPE = np.dtype([("id", "<i8"), ("title", object), ("year", "<i4"), ("genres", object)])

_HELP = (
    "Place the MovieLens-100K files u.data and u.user (and u.item or items.tsv) in {where}, or "
    "run the project's shared/data/get-movielens-100k script, which lays them out in the Keras "
    "cache (~/.keras/datasets/ml-100k)."
)


@dataclass
class MovieLensData:
    """MovieLens ratings as a watch log, with user and item tables.

    Attributes:
        watches: `keras_yt.data.WATCH_DTYPE` rows ``(user, video, timestamp, watch_time)`` in file
            order; ``video`` is the item id, ``timestamp`` Unix seconds and ``watch_time`` the
            rating (1-5), to be used as the example weight.
        users: ``(id, age, gender, occupation, zip, gender_id, occupation_id)``, sorted by id;
            ``gender_id`` is 1 for F and 2 for M, ``occupation_id`` is 1 + the index in
            `occupations` (0 would be unknown).
        videos: ``(id, title, year, genres)`` sorted by id (title without the "(year)" suffix,
            year 0 when unknown, genres "|"-joined); empty when no item file was found.
        num_users: number of users (ids 1..num_users).
        num_videos: size of the video id space including padding 0 (item ids in [1, num_videos)).
        occupations: sorted occupation names.
        path: folder the files were read from.
    """

    watches: np.ndarray
    users: np.ndarray
    videos: np.ndarray
    num_users: int
    num_videos: int
    occupations: list[str] = field(default_factory=list)
    path: str = ""


def _keras_home() -> Path:
    return Path(os.path.expanduser(os.environ.get("KERAS_HOME", os.path.join("~", ".keras"))))


def _find(folder: Path) -> Path | None:
    """The folder holding u.data and u.user: `folder` itself or its ``ml-100k`` subfolder."""
    for candidate in (folder, folder / "ml-100k"):
        if (candidate / "u.data").is_file() and (candidate / "u.user").is_file():
            return candidate
    return None


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download(cache: Path) -> Path:
    import keras  # deferred: keras is only needed for downloading

    try:
        extracted = keras.utils.get_file(
            fname="ml-100k",
            origin=ORIGIN,
            file_hash=ZIP_MD5,
            cache_subdir="datasets",
            extract=True,
        )
    except Exception as error:  # network errors, bad checksums, ...
        raise FileNotFoundError(
            f"MovieLens-100K is not in {cache} and downloading {ORIGIN} failed ({error}). "
            + _HELP.format(where=cache)
        ) from error
    found = _find(Path(extracted))
    if found is None:
        raise FileNotFoundError(
            f"Downloaded {ORIGIN} to {extracted} but found no u.data / u.user in it. "
            + _HELP.format(where=cache)
        )
    return found


def _read_items(folder: Path) -> np.ndarray:
    rows = []
    if (folder / "u.item").is_file():
        with open(folder / "u.item", encoding="latin-1") as f:
            for line in f:
                parts = line.rstrip("\r\n").split("|")
                if len(parts) < 24:
                    continue
                title = parts[1]
                if title.endswith(")") and title[-6:-5] == "(" and title[-5:-1].isdigit():
                    title = title[:-7].rstrip()
                date = parts[2]
                year = int(date[-4:]) if date[-4:].isdigit() else 0
                flags = parts[-19:]
                genres = "|".join(g for g, flag in zip(GENRES, flags) if flag == "1")
                rows.append((int(parts[0]), title, year, genres))
    elif (folder / "items.tsv").is_file():
        with open(folder / "items.tsv", encoding="latin-1") as f:
            for line in f:
                parts = line.rstrip("\r\n").split("\t")
                if len(parts) != 4:
                    continue
                year = int(parts[2]) if parts[2].isdigit() else 0
                genres = "|".join(parts[3].split())
                rows.append((int(parts[0]), parts[1], year, genres))
    out = np.empty(len(rows), dtype=VIDEO_DTYPE)
    for i, row in enumerate(sorted(rows)):
        out[i] = row
    return out


def load_data(
    name: str = "ml-100k", data_dir: str | os.PathLike | None = None, verify: bool = True
) -> MovieLensData:
    """Loads MovieLens-100K ratings as a watch log (plus the user and item tables).

    Looks for ``u.data`` and ``u.user`` in `data_dir` (or its ``ml-100k`` subfolder). Without
    `data_dir`, looks in the Keras cache (``$KERAS_HOME/datasets/ml-100k``, default
    ``~/.keras/datasets/ml-100k``) and, when absent, downloads and extracts the GroupLens zip there
    with `keras.utils.get_file` (md5-checked). Items come from ``u.item`` (original pipe format,
    latin-1) or else ``items.tsv`` (tab-separated: item id, title, year, space-separated genres).

    Args:
        name: data set name; only ``"ml-100k"``.
        data_dir: folder holding the files; no download is attempted when given.
        verify: check the md5 sums of ``u.data`` and ``u.user`` against the GroupLens originals.

    Returns:
        A `MovieLensData` (100,000 watches, 943 users, item ids 1..1682, ``num_videos`` 1683).

    Raises:
        ValueError: unknown `name`, or a file's md5 sum differs from the original.
        FileNotFoundError: the files are absent (and the download failed); the message says where
            to place them.

    Example:
    >>> data = load_data()  # doctest: +SKIP
    >>> len(data.watches), data.num_users, data.num_videos  # doctest: +SKIP
    (100000, 943, 1683)
    """
    if name != "ml-100k":
        raise ValueError(f"name must be 'ml-100k' (the only supported data set), got {name!r}")
    if data_dir is not None:
        folder = _find(Path(data_dir))
        if folder is None:
            raise FileNotFoundError(
                f"No u.data and u.user in data_dir={str(data_dir)!r}. "
                + _HELP.format(where=data_dir)
            )
    else:
        cache = _keras_home() / "datasets" / "ml-100k"
        folder = _find(cache) or _download(cache)
    if verify:
        for file_name, expected in FILE_MD5.items():
            actual = _md5(folder / file_name)
            if actual != expected:
                raise ValueError(
                    f"{folder / file_name} has md5 {actual}, expected {expected} (the GroupLens "
                    "MovieLens-100K original); the file is corrupt or another version. "
                    + _HELP.format(where=folder)
                )
    raw = np.loadtxt(folder / "u.data", dtype=np.int64, delimiter="\t", ndmin=2)
    if raw.shape[1] != 4:
        raise ValueError(
            f"{folder / 'u.data'} must have 4 tab-separated columns (user, item, rating, "
            f"timestamp), got {raw.shape[1]}"
        )
    watches = np.empty(len(raw), dtype=WATCH_DTYPE)
    watches["user"] = raw[:, 0]
    watches["video"] = raw[:, 1]
    watches["timestamp"] = raw[:, 3]
    watches["watch_time"] = raw[:, 2]

    user_rows = []
    with open(folder / "u.user", encoding="latin-1") as f:
        for line in f:
            parts = line.rstrip("\r\n").split("|")
            if len(parts) == 5:
                user_rows.append((int(parts[0]), int(parts[1]), parts[2], parts[3], parts[4]))
    user_rows.sort()
    occupations = sorted({row[3] for row in user_rows})
    users = np.empty(len(user_rows), dtype=USER_DTYPE)
    for i, (uid, age, gender, occupation, zip_code) in enumerate(user_rows):
        users[i] = (uid, age, gender, occupation, zip_code, {"F": 1, "M": 2}.get(gender, 0),
                    occupations.index(occupation) + 1)
    videos = _read_items(folder)
    max_item = int(max(watches["video"].max(initial=0), videos["id"].max(initial=0)))
    return MovieLensData(
        watches=watches,
        users=users,
        videos=videos,
        num_users=len(users),
        num_videos=max_item + 1,
        occupations=occupations,
        path=str(folder),
    )
