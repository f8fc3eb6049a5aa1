"""Write the seeds of the run-folder fuzz targets: `model_json`, `run_folder` and `report_run`.

Run by hand from the repository root, after `cargo build --release`:

    python3 fuzz/seeds/make_run_seeds.py

Standard library only. It trains three tiny pipelines on MNIST (`data/mnist`, a few seconds each)
with `target/release/nabla` into a temporary folder, and also takes the committed run folders of
`resources/`. `run_folder` and `report_run` read a folder packed as `nabla::parsers::Folder` reads it
(see `pack` below); the seeds are committed.
"""
import json, os, struct, subprocess, tempfile, zlib

here = os.path.dirname(os.path.abspath(__file__))
repo = os.path.normpath(os.path.join(here, "..", ".."))
resources = os.path.join(repo, "resources")


def out(target, name, data):
    os.makedirs(os.path.join(here, target), exist_ok=True)
    with open(os.path.join(here, target, name), "wb") as f:
        f.write(data)


def pack(folder_name, entries):
    """A folder as `parsers::Folder` reads it: per entry, the name's length (1 byte), the name, the
    data's length (4 bytes, little endian), the data. The empty name gives the folder's own name;
    a name ending in '/' is a folder, in '@' a symbolic link to the data."""
    def entry(name, data):
        name = name.encode()
        return bytes([len(name)]) + name + struct.pack("<I", len(data)) + data
    return entry("", folder_name.encode()) + b"".join(entry(n, d) for n, d in entries)


def png(width, height, color_type, seed):
    """A small valid PNG: gray (0), RGB (2) or RGBA (6), 8 bits, made-up pixels."""
    channels = {0: 1, 2: 3, 6: 4}[color_type]
    rows = b"".join(b"\0" + bytes((seed * 31 + x * 17 + y * 7) % 256 for x in range(width * channels))
                    for y in range(height))
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b"")


def figure_links(md):
    """The plain file names of `report.md`'s `![caption](file)` lines, as the report reads them."""
    names = []
    for line in md.decode().splitlines():
        line = line.strip()
        if line.startswith("![") and line.endswith(")") and "](" in line:
            name = line[:-1].rsplit("](", 1)[1]
            if name and not name.startswith(".") and "/" not in name and "\\" not in name and name not in names:
                names.append(name)
    return names


def read(folder, name):
    with open(os.path.join(folder, name), "rb") as f:
        return f.read()


# Three tiny models, trained for 3 steps on 200 MNIST images: an MLP with per-image normalisation,
# a small CNN (weights under another name), and a parameter-free backbone (random-init) in front of
# a linear head, so `model.json` has a backbone digest. Their weights are 2-26 KB.
TINY = {
    "tiny_mlp": """
version = 1
name = "tiny_mlp"
description = "A 784-8-10 tanh MLP on 200 MNIST images, normalised per image (fuzz seed)."
seed = 1

[data]
dataset = "mnist"
root = "data/mnist"
train_limit = 200
normalize = "mean_max_abs"

[model]
kind = "mlp"
hidden = [8]
activation = "tanh"

[train]
optimizer = "adam"
lr = 1e-3
iterations = 3
batch_size = 50
loss = "mean"
""",
    "tiny_cnn": """
version = 1
name = "tiny_cnn"
description = "conv 2@5x5, sigmoid, 4x4 max-pool, linear on 200 MNIST images (fuzz seed)."
seed = 2

[data]
dataset = "mnist"
root = "data/mnist"
train_limit = 200

[model]
kind = "sequential"

[[model.layers]]
type = "conv2d"
out = 2
kernel = 5

[[model.layers]]
type = "sigmoid"

[[model.layers]]
type = "max_pool2d"
kernel = 4

[[model.layers]]
type = "flatten"

[[model.layers]]
type = "linear"
out = 10

[train]
optimizer = "sgd"
lr = 1e-2
momentum = 0.9
iterations = 3
batch_size = 50
save = "cnn.safetensors"
""",
    "tiny_backbone": """
version = 1
name = "tiny_backbone"
description = "A fixed 4x4 max-pool backbone (random-init, no weights) in front of a linear head (fuzz seed)."
seed = 3

[data]
dataset = "mnist"
root = "data/mnist"
train_limit = 200

[backbone]
kind = "sequential"
if_missing = "random"

[[backbone.layers]]
type = "max_pool2d"
kernel = 4

[model]
kind = "linear"

[train]
optimizer = "sgd"
lr = 1e-3
iterations = 3
batch_size = 0
loss = "sum"
""",
}

nabla = os.path.join(repo, "target", "release", "nabla")
with tempfile.TemporaryDirectory() as tmp:
    runs = {}
    for name, text in TINY.items():
        toml = os.path.join(tmp, name + ".toml")
        with open(toml, "w") as f:
            f.write(text)
        folder = os.path.join(tmp, name)
        subprocess.run([nabla, "--quiet", toml, "--out", folder], cwd=repo, check=True, stdout=subprocess.DEVNULL)
        runs[name] = folder

    # model_json: every model.json there is, committed or just written.
    for name in ["part4", "part10", "lenet5", "faces_cnn"]:
        out("model_json", name + ".json", read(os.path.join(resources, name), "model.json"))
    for name, folder in runs.items():
        out("model_json", name + ".json", read(folder, "model.json"))

    # run_folder: what predict and eval read (model.json, pipeline.toml, the weights it names).
    def run_folder(name, folder):
        weights = json.loads(read(folder, "model.json"))["weights"]["file"]
        entries = [(f, read(folder, f)) for f in ["model.json", "pipeline.toml", weights]]
        out("run_folder", name, pack(name, entries))
    run_folder("part4", os.path.join(resources, "part4"))  # 784 -> 10, 31 KB of weights
    for name, folder in runs.items():
        run_folder(name, folder)
    # The weights through a symbolic link, beside an empty folder: a seed for the fuzzer's names
    # ending in '@' (links) and '/' (folders).
    cnn = runs["tiny_cnn"]
    out("run_folder", "tiny_cnn_linked", pack("tiny_cnn_linked", [
        ("model.json", read(cnn, "model.json")), ("pipeline.toml", read(cnn, "pipeline.toml")),
        ("checkpoints/", b""), ("cnn.safetensors@", b"stored.safetensors"),
        ("stored.safetensors", read(cnn, "cnn.safetensors"))]))

    # report_run: metrics.json and report.md as written, each figure replaced by a tiny PNG (the real
    # ones are 5-150 KB); part3 has no figures, part10 a random-init backbone, faces_cnn trials.
    def report_run(name, folder):
        md = read(folder, "report.md")
        figures = [(f, png(3 + i % 4, 2 + i % 3, [2, 0, 6][i % 3], i)) for i, f in enumerate(figure_links(md))]
        out("report_run", name, pack(name, [("metrics.json", read(folder, "metrics.json")), ("report.md", md)] + figures))
    for name in ["part1", "part3", "part4", "part10", "lenet5", "faces_cnn"]:
        report_run(name, os.path.join(resources, name))
    report_run("tiny_cnn", runs["tiny_cnn"])
    # part1 with a folder and a link the report does not name (so no warning), for the fuzzer to rename.
    part1 = os.path.join(resources, "part1")
    md = read(part1, "report.md")
    out("report_run", "part1_linked", pack("part1", [
        ("metrics.json", read(part1, "metrics.json")), ("report.md", md), ("figure1_samples.png", png(3, 2, 2, 0)),
        ("cache/", b""), ("latest.png@", b"figure1_samples.png")]))
