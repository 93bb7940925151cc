"""Saliency maps: which pixels does the digits CNN look at?

The saliency of a pixel is |d score / d pixel|, the gradient of the predicted class's
score with respect to the input image (``unidl.value_and_grad(..., inputs=[x])``). The
script trains the CNN of cnn_digits_sparse.py, then writes a PNG with one row per test
digit: the image, then its saliency map (brighter = more influence). The PNG is written
with NumPy and zlib only, so no plotting library is needed.

    python examples/saliency.py --backend torch --out saliency.png
"""
from __future__ import annotations

import argparse
import struct
import zlib

import numpy as np

import unidl
from unidl import ops

try:  # run as a script from examples/ or imported as a module by the tests
    from cnn_digits import make_data
    from cnn_digits_sparse import build_model
except ImportError:  # pragma: no cover
    from examples.cnn_digits import make_data
    from examples.cnn_digits_sparse import build_model


def saliency_maps(model: unidl.Model, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(predicted classes, |gradient of each image's top score| per pixel)."""
    classes = model.predict(images).argmax(axis=1)
    with unidl.use_backend(model.backend) as b:
        chosen = b.convert(np.eye(10, dtype=images.dtype)[classes])
        # The sum over the batch of each image's own class score: its gradient for image i
        # is the gradient of image i's score alone, since the images do not interact.
        _, (grad,) = unidl.value_and_grad(lambda x: ops.sum(ops.multiply(model(x), chosen)), inputs=[images])
        return classes, np.abs(b.to_numpy(grad))[..., 0]


def write_png(path: str, gray: np.ndarray) -> None:
    """An 8-bit grayscale PNG from values in [0, 1]."""
    pixels = (np.clip(gray, 0, 1) * 255).astype(np.uint8)
    raw = b"".join(b"\x00" + row.tobytes() for row in pixels)  # filter type 0 per row

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", pixels.shape[1], pixels.shape[0], 8, 0, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) +
                chunk(b"IEND", b""))


def picture(images: np.ndarray, maps: np.ndarray, scale: int = 16) -> np.ndarray:
    """Rows of [image | saliency], each 8x8 cell enlarged ``scale`` times, with a gap."""
    rows = []
    for image, heat in zip(images[..., 0], maps):
        heat = heat / (heat.max() or 1.0)
        row = np.concatenate([image, np.zeros((8, 1)), heat], axis=1)
        rows += [row, np.zeros((1, row.shape[1]))]
    return np.kron(np.concatenate(rows[:-1]), np.ones((scale, scale)))


def main(backend: str = "numpy", epochs: int = 10, verbose: int = 0, seed: int = 0, count: int = 6,
         out: str = "saliency.png") -> dict:
    (x_train, y_train), (x_test, y_test) = make_data(seed)
    model = build_model(seed)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", backend=backend)
    model.fit(x_train, y_train, epochs=epochs, batch_size=32, verbose=verbose)
    images = x_test[:count]
    classes, maps = saliency_maps(model, images)
    write_png(out, picture(images, maps))
    print(f"[{backend}] predicted {classes.tolist()} (true {y_test[:count].tolist()}); saliency maps in {out}")
    return {"classes": classes, "maps": maps, "path": out}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="numpy", help="numpy, torch, tensorflow or a plugin backend")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--out", default="saliency.png", help="where to write the PNG")
    args = parser.parse_args()
    main(args.backend, args.epochs, out=args.out)
