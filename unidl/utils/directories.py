"""``image_dataset_from_directory`` / ``text_dataset_from_directory``: one subdirectory per class.

::

    main_directory/
        class_a/  a_image_1.jpg  a_image_2.jpg ...
        class_b/  b_image_1.jpg ...

gives a :class:`~unidl.utils.datasets.Dataset` of ``(images, labels)``
batches, label ``i`` for the ``i``-th class directory in alphanumeric order,
read from disk as each batch is drawn. Files are indexed, ordered, shuffled
and split into training/validation exactly as Keras 3 does, so the same
``seed`` and ``validation_split`` put the same files in each subset.

Images are decoded and resized with Pillow (``pip install pillow``, imported
when the first batch is read); pixel values after a resize can differ
slightly from Keras's, which resizes with TensorFlow.
"""
from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from .datasets import Dataset, _Source
from .random_seed import default_seed

__all__ = ["image_dataset_from_directory", "text_dataset_from_directory"]

IMAGE_FORMATS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
TEXT_FORMATS = (".txt",)


# ------------------------------------------------------------------ indexing (Keras's rules)

def _files_under(directory: str, follow_links: bool, formats: tuple[str, ...]) -> list[str]:
    """Files with an allowed suffix under ``directory``, walked in sorted order, as paths relative to it."""
    found = []
    for root, _, files in sorted(os.walk(directory, followlinks=follow_links), key=lambda item: item[0]):
        for name in sorted(files):
            if name.lower().endswith(formats):
                found.append(os.path.relpath(os.path.join(root, name), directory))
    return found


def _index_directory(directory: str, labels: Any, formats: tuple[str, ...], class_names: Sequence[str] | None,
                     shuffle: bool, seed: int | None, follow_links: bool, verbose: bool):
    """(file paths, integer labels or None, class names or None), ordered and shuffled as Keras does."""
    if not os.path.isdir(directory):
        raise ValueError(f"directory {directory!r} does not exist or is not a directory")
    if labels == "inferred":
        subdirs = [d for d in sorted(os.listdir(directory))
                   if os.path.isdir(os.path.join(directory, d)) and not d.startswith(".")]
        if class_names is not None:
            if not set(class_names) <= set(subdirs):
                raise ValueError(f"The `class_names` passed did not match the names of the subdirectories of the "
                                 f"target directory. Expected: {subdirs} (or a subset of it), but received: "
                                 f"class_names={list(class_names)}")
            subdirs = list(class_names)
        paths, label_list = [], []
        for index, subdir in enumerate(subdirs):
            for relative in _files_under(os.path.join(directory, subdir), follow_links, formats):
                paths.append(os.path.join(directory, subdir, relative))
                label_list.append(index)
        label_array = np.asarray(label_list, dtype=np.int32)
        names = list(subdirs)
    else:
        if class_names is not None:
            raise ValueError("When `labels=None` (no labels), argument `class_names` cannot be specified."
                             if labels is None else
                             "When argument `labels` is specified, argument `class_names` cannot be specified "
                             "(the `class_names` will be the sorted list of labels).")
        paths = [os.path.join(directory, relative) for relative in _files_under(directory, follow_links, formats)]
        if labels is None:
            label_array, names = None, None
        else:
            if len(labels) != len(paths):
                raise ValueError(f"Expected the lengths of `labels` to match the number of files in the target "
                                 f"directory. len(labels) is {len(labels)} while we found {len(paths)} files in "
                                 f"directory {directory}.")
            label_array = np.asarray(labels)
            names = [str(label) for label in sorted(set(np.asarray(labels).tolist()))]
    if verbose:
        print(f"Found {len(paths)} files." if label_array is None
              else f"Found {len(paths)} files belonging to {len(names)} classes.")
    if shuffle:
        if seed is None:
            seed = default_seed()
            if seed is None:
                seed = int(np.random.randint(1_000_000))
            seed %= 2**32
        np.random.RandomState(seed).shuffle(paths)
        if label_array is not None:
            np.random.RandomState(seed).shuffle(label_array)
    return paths, label_array, names


def _check_split(validation_split, subset, shuffle, seed) -> None:
    if validation_split is not None and not 0 < validation_split < 1:
        raise ValueError(f"`validation_split` must be between 0 and 1, received: {validation_split}")
    if (validation_split or subset) and not (validation_split and subset):
        raise ValueError("If `subset` is set, `validation_split` must be set, and inversely.")
    if subset not in ("training", "validation", "both", None):
        raise ValueError(f'`subset` must be either "training", "validation" or "both", received: {subset}')
    if validation_split and shuffle and seed is None:
        raise ValueError("If using `validation_split` and shuffling the data, you must provide a `seed` argument, "
                         "to make sure that there is no overlap between the training and validation subset.")


def _subset(paths, labels, validation_split, subset: str, verbose: bool):
    if not validation_split:
        return paths, labels
    n_val = int(validation_split * len(paths))
    if subset == "training":
        if verbose:
            print(f"Using {len(paths) - n_val} files for training.")
        cut = slice(None, len(paths) - n_val)
    else:
        if verbose:
            print(f"Using {n_val} files for validation.")
        cut = slice(len(paths) - n_val, None)
    return paths[cut], None if labels is None else labels[cut]


def _encode_labels(labels: np.ndarray, label_mode: str, num_classes: int) -> np.ndarray:
    if label_mode == "binary":
        return labels.astype(np.float32)[:, None]
    if label_mode == "categorical":
        return np.eye(num_classes, dtype=np.float32)[labels]
    return labels.astype(np.int32)


def _check_label_mode(labels, label_mode, what: str) -> None:
    if labels not in ("inferred", None) and not isinstance(labels, (list, tuple, np.ndarray)):
        raise ValueError(f"`labels` argument should be a list/tuple of integer labels, of the same size as the "
                         f"number of {what} files in the target directory. If you wish to infer the labels from "
                         f"the subdirectory names in the target directory, pass `labels=\"inferred\"`. If you wish "
                         f"to get a dataset that only contains {what}s (no labels), pass `labels=None`. Received: "
                         f"labels={labels}")
    if label_mode not in ("int", "categorical", "binary", None):
        raise ValueError(f'`label_mode` argument must be one of "int", "categorical", "binary", or None. Received: '
                         f"label_mode={label_mode}")


class _FileSource(_Source):
    """Samples read from files when gathered: ``load(path) -> array``, stacked; labels alongside."""

    def __init__(self, paths: list[str], labels: np.ndarray | None, load, stack):
        self.paths, self.labels, self.load, self.stack = paths, labels, load, stack
        self.n = len(paths)

    def gather(self, index):
        if np.ndim(index) == 0:
            item = self.load(self.paths[int(index)])
            return item if self.labels is None else (item, self.labels[int(index)])
        items = self.stack([self.load(self.paths[int(i)]) for i in np.asarray(index)])
        return items if self.labels is None else (items, self.labels[np.asarray(index)])


def _make_datasets(paths, labels, label_mode, names, validation_split, subset, shuffle, seed, batch_size,
                   verbose, load, stack, what: str):
    if label_mode is None:
        labels = None
    if label_mode == "binary" and labels is not None and len(names) != 2:
        raise ValueError(f'When passing `label_mode="binary"`, there must be exactly 2 class_names. Received: '
                         f"class_names={names}")
    num_classes = len(names) if names else 0
    encoded = None if labels is None else _encode_labels(np.asarray(labels), label_mode, num_classes)

    def one(part: str) -> Dataset:
        p, lab = _subset(paths, encoded, validation_split, part, verbose)
        if not p:
            raise ValueError(f"No {what}s found in the {part} subset: {len(paths)} files, validation_split="
                             f"{validation_split}")
        dataset = Dataset(_FileSource(list(p), lab, load, stack), shuffle_samples=bool(shuffle), seed=seed)
        if batch_size is not None:
            dataset = dataset.batch(batch_size)
        dataset.class_names = names
        dataset.file_paths = list(p)
        return dataset

    if subset == "both":
        return [one("training"), one("validation")]
    return one(subset or "training")


# ------------------------------------------------------------------ images

_PIL_FILTERS = {"bilinear": "BILINEAR", "nearest": "NEAREST", "bicubic": "BICUBIC", "lanczos3": "LANCZOS",
                "lanczos5": "LANCZOS", "area": "BOX", "gaussian": "BILINEAR", "mitchellcubic": "BICUBIC"}
_CHANNELS = {"rgb": ("RGB", 3), "rgba": ("RGBA", 4), "grayscale": ("L", 1)}


def _image_loader(image_size, color_mode, interpolation, crop_to_aspect_ratio, pad_to_aspect_ratio):
    height, width = image_size
    mode, channels = _CHANNELS[color_mode]

    def load(path: str) -> np.ndarray:
        try:
            from PIL import Image
        except ImportError as exc:
            raise ImportError("image_dataset_from_directory reads images with Pillow: `pip install pillow`") from exc
        with Image.open(path) as image:
            image = image.convert(mode)
            w, h = image.size
            if crop_to_aspect_ratio:  # the largest centered window of the target aspect ratio
                crop_w, crop_h = min(w, int(h * width / height)), min(h, int(w * height / width))
                left, top = (w - crop_w) // 2, (h - crop_h) // 2
                image = image.crop((left, top, left + crop_w, top + crop_h))
            elif pad_to_aspect_ratio:  # centered on a black canvas of the target aspect ratio
                pad_w, pad_h = max(w, int(h * width / height)), max(h, int(w * height / width))
                canvas = Image.new(mode, (pad_w, pad_h))
                canvas.paste(image, ((pad_w - w) // 2, (pad_h - h) // 2))
                image = canvas
            if image.size != (width, height):
                image = image.resize((width, height), getattr(Image, _PIL_FILTERS[interpolation]))
            array = np.asarray(image, dtype=np.float32)
        return array.reshape(height, width, channels)

    return load


def image_dataset_from_directory(directory, labels="inferred", label_mode="int", class_names=None,
                                 color_mode="rgb", batch_size=32, image_size=(256, 256), shuffle=True, seed=None,
                                 validation_split=None, subset=None, interpolation="bilinear", follow_links=False,
                                 crop_to_aspect_ratio=False, pad_to_aspect_ratio=False, data_format=None,
                                 verbose=True):
    """A :class:`Dataset` of ``(images, labels)`` batches from image files, with Keras 3's arguments.

    Args:
        directory: holds one subdirectory per class (``labels="inferred"``), or the images themselves.
        labels: "inferred" (from the subdirectories), None (images only), or a
            list of integer labels, one per image file in sorted path order.
        label_mode: "int" (int32 ids), "categorical" (float32 one-hot),
            "binary" (float32 of shape (n, 1), exactly 2 classes), or None (images only).
        class_names: with "inferred": the class subdirectories to use, in this order.
        color_mode: "rgb" (3 channels), "rgba" (4) or "grayscale" (1).
        batch_size: images per batch (None: single images).
        image_size: (height, width) every image is resized to.
        shuffle: shuffle the files (once, before the split) and each pass's order.
        seed: the seed of those shuffles; required with ``validation_split`` and ``shuffle``.
        validation_split: the fraction of files held out for validation.
        subset: "training", "validation" or "both" (a list of the two datasets).
        interpolation: the resize filter: "bilinear", "nearest", "bicubic", "area", "lanczos3"...
        follow_links: follow symbolic links to subdirectories.
        crop_to_aspect_ratio / pad_to_aspect_ratio: crop or pad (centered) to the target
            aspect ratio before resizing, instead of stretching.
        data_format: "channels_last" (or None); unidl's image layout is channels last.
        verbose: print how many files and classes were found.

    Returns:
        the dataset (float32 images of shape (batch, height, width, channels),
        pixel values 0-255), with ``class_names`` and ``file_paths`` attributes.
    """
    if data_format not in (None, "channels_last"):
        raise ValueError(f"data_format={data_format!r}: unidl's images are channels last (NHWC); convert after "
                         "loading with np.transpose if another layout is needed")
    if color_mode not in _CHANNELS:
        raise ValueError(f'`color_mode` must be one of {{"rgb", "rgba", "grayscale"}}. Received: '
                         f"color_mode={color_mode}")
    if interpolation not in _PIL_FILTERS:
        raise ValueError(f"interpolation must be one of {sorted(_PIL_FILTERS)}, got {interpolation!r}")
    if crop_to_aspect_ratio and pad_to_aspect_ratio:
        raise ValueError("Only one of `crop_to_aspect_ratio`, `pad_to_aspect_ratio` can be set to `True`.")
    if len(tuple(image_size)) != 2 or any(int(s) <= 0 for s in image_size):
        raise ValueError(f"image_size must be (height, width) of positive sizes, got {image_size!r}")
    _check_label_mode(labels, label_mode, "image")
    _check_split(validation_split, subset, shuffle, seed)
    paths, label_array, names = _index_directory(os.fspath(directory), labels, IMAGE_FORMATS, class_names,
                                                 shuffle, seed, follow_links, verbose)
    if not paths:
        raise ValueError(f"No images found in directory {directory}. Allowed formats: {IMAGE_FORMATS}")
    load = _image_loader(tuple(int(s) for s in image_size), color_mode, interpolation, crop_to_aspect_ratio,
                         pad_to_aspect_ratio)
    return _make_datasets(paths, label_array, label_mode, names, validation_split, subset, shuffle,
                          _shuffle_seed(shuffle, seed), batch_size, verbose, load, np.stack, "image")


# ------------------------------------------------------------------ text

def text_dataset_from_directory(directory, labels="inferred", label_mode="int", class_names=None, batch_size=32,
                                max_length=None, shuffle=True, seed=None, validation_split=None, subset=None,
                                follow_links=False, verbose=True):
    """A :class:`Dataset` of ``(texts, labels)`` batches from ``.txt`` files, with Keras 3's arguments.

    Texts come as NumPy arrays of Python strings (dtype object), each file's
    whole content decoded as UTF-8, cut to ``max_length`` characters when given.
    The other arguments are those of :func:`image_dataset_from_directory`.
    (Keras yields ``tf.string`` tensors, whose NumPy values are ``bytes``.)
    """
    if max_length is not None and (isinstance(max_length, bool) or not isinstance(max_length, int)
                                   or max_length <= 0):
        raise ValueError(f"max_length must be a positive integer or None, got max_length={max_length!r}")
    _check_label_mode(labels, label_mode, "text")
    _check_split(validation_split, subset, shuffle, seed)
    paths, label_array, names = _index_directory(os.fspath(directory), labels, TEXT_FORMATS, class_names,
                                                 shuffle, seed, follow_links, verbose)
    if not paths:
        raise ValueError(f"No text files found in directory {directory}. Allowed format: .txt")

    def load(path: str) -> str:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        return text if max_length is None else text[:max_length]

    def stack(texts: list[str]) -> np.ndarray:
        out = np.empty(len(texts), dtype=object)
        out[:] = texts
        return out

    return _make_datasets(paths, label_array, label_mode, names, validation_split, subset, shuffle,
                          _shuffle_seed(shuffle, seed), batch_size, verbose, load, stack, "text file")


def _shuffle_seed(shuffle: bool, seed: int | None) -> int | None:
    """The seed of the per-pass shuffle (None: unidl's default seed, else fresh entropy)."""
    return seed if shuffle else None
