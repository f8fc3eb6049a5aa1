"""Write the fuzz targets' seed corpora (small, valid files of each format).

Run by hand from the repository root: python3 fuzz/seeds/make_seeds.py
Needs numpy, Pillow and torch (for the .pth seed); the seeds are committed.
"""
import gzip, io, json, os, shutil, struct, zipfile
import numpy as np

root = os.path.dirname(os.path.abspath(__file__))
def out(target, name, data):
    os.makedirs(os.path.join(root, target), exist_ok=True)
    with open(os.path.join(root, target, name), "wb") as f:
        f.write(data)

# pipeline: the project's own files.
pipes = os.path.join(root, "..", "..", "pipelines")
for f in sorted(os.listdir(pipes)):
    if f.endswith(".toml"):
        out("pipeline", f, open(os.path.join(pipes, f), "rb").read())

# idx: small arrays of unsigned bytes, 1 to 3 dimensions.
def idx(dims, data):
    return bytes([0, 0, 8, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + bytes(data)
out("idx", "labels.idx", idx([5], [7, 2, 1, 0, 4]))
out("idx", "images.idx", idx([2, 3, 3], range(18)))
out("idx", "one.idx", idx([1, 1, 1], [255]))

# weights: a two-tensor state dict as safetensors and as torch.save's zip.
a = np.arange(6, dtype=np.float32).reshape(2, 3)
b = np.array([0.5, -1.0], dtype=np.float32)
header = {"fc.weight": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
          "fc.bias": {"dtype": "F32", "shape": [2], "data_offsets": [24, 32]}}
h = json.dumps(header, separators=(",", ":")).encode()
out("weights", "tiny.safetensors", struct.pack("<Q", len(h)) + h + a.tobytes() + b.tobytes())

# weights, stdlib only: a valid .pth whose pickle uses the shapes a hostile one
# would push further: a storage shared through the memo by two views, and a
# BUILD state nested 31 deep through memo lookups (t = (t, t)), just inside
# the reader's limit of 32.
def pth_zip(pickle, storages):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pickle)
        for key, data in storages.items():
            z.writestr("archive/data/" + key, data)
    return buf.getvalue()
def text(s):
    return b"\x8c" + bytes([len(s)]) + s.encode()
view = lambda offset, storage: (b"ctorch._utils\n_rebuild_tensor_v2\n(" + storage + b"QK" + bytes([offset])
                                + b"K\x02\x85K\x01\x85\x89)tR")
shared = b"(" + text("storage") + b"ctorch\nFloatStorage\n" + text("0") + text("cpu") + b"K\x04tq\x01"
pickle = (b"\x80\x02}q\x00(" + text("fc.bias") + view(0, shared) + text("fc.extra") + view(2, b"h\x01") + b"u"
          + b")q\x02" + b"h\x02\x86q\x02" * 30 + b"b.")
out("weights", "shared_and_nested.pth", pth_zip(pickle, {"0": struct.pack("<4f", 0, 1, 2, 3)}))
# idx: gzipped, and in two gzip members (as `cat a.gz b.gz` writes).
out("idx", "images.idx.gz", gzip.compress(idx([2, 3, 3], range(18)), mtime=0))
out("idx", "labels_two_members.idx.gz",
    gzip.compress(idx([5], [7, 2, 1, 0, 4])[:6], mtime=0) + gzip.compress(idx([5], [7, 2, 1, 0, 4])[6:], mtime=0))
import torch
buf = io.BytesIO()
torch.save({"fc.weight": torch.from_numpy(a), "fc.bias": torch.from_numpy(b)}, buf)
out("weights", "tiny.pth", buf.getvalue())
buf = io.BytesIO()
torch.save({"fc.weight": torch.from_numpy(a), "fc.bias": torch.from_numpy(b)}, buf, _use_new_zipfile_serialization=False)
out("weights", "tiny_legacy.pth", buf.getvalue())

# image: tiny PNGs (gray, RGB, RGBA) and a JPEG.
from PIL import Image
rng = np.random.default_rng(0)
for mode, ch in [("L", 1), ("RGB", 3), ("RGBA", 4)]:
    px = rng.integers(0, 256, size=(4, 5, ch) if ch > 1 else (4, 5), dtype=np.uint8)
    buf = io.BytesIO(); Image.fromarray(px, mode).save(buf, "PNG")
    out("image", f"tiny_{mode.lower()}.png", buf.getvalue())
buf = io.BytesIO(); Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(buf, "JPEG")
out("image", "tiny.jpg", buf.getvalue())

# facescrub_list: the header and a few lines in the real list's layout.
lines = ["name\timage_id\tface_id\turl\tbbox\tsha256"]
for i, who in enumerate(["Alec Baldwin", "Lorraine Bracco", "Gerard Butler"]):
    sha = format(i * 977, "064x")
    lines.append(f"{who}\t{i}\t{i + 10}\thttp://example.com/{i}.jpg\t10,20,110,140\t{sha}")
out("facescrub_list", "three.txt", ("\n".join(lines) + "\n").encode())
