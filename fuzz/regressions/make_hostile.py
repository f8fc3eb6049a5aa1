"""Write the hostile files of issue #13 that the readers now refuse (stdlib only).

Run from the repository root: python3 fuzz/regressions/make_hostile.py
`tests/fuzz_corpus.rs` replays them: each must give an error, not a panic,
and (being small) must not take long or much memory.
"""
import gzip, io, os, struct, zipfile

root = os.path.dirname(os.path.abspath(__file__))
def out(target, name, data):
    os.makedirs(os.path.join(root, target), exist_ok=True)
    with open(os.path.join(root, target, name), "wb") as f:
        f.write(data)

def pth_zip(pickle, storage=b""):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pickle)
        z.writestr("archive/data/0", storage)
    return buf.getvalue()

def long1(v):
    return b"\x8a\x08" + struct.pack("<q", v)

def text(s):
    return b"\x8c" + bytes([len(s)]) + s.encode()

def state_dict(numel, offset, size, stride):
    return (b"\x80\x02}" + text("w") + b"ctorch._utils\n_rebuild_tensor_v2\n((" + text("storage")
            + b"ctorch\nFloatStorage\n" + text("0") + text("cpu") + long1(numel) + b"tQ" + long1(offset)
            + b"(" + b"".join(map(long1, size)) + b"t(" + b"".join(map(long1, stride)) + b"t\x89)tRs.")

# Memo lookups that copied: a 1000-int tuple looked up 20 000 times (640 MB copied).
out("weights", "memo_bomb.pth", pth_zip(b"\x80\x02(" + b"K\x07" * 1000 + b"tq\x00](" + b"h\x00" * 20000 + b"e."))
# t = (t, t) 64 times: 2^64 values once expanded.
out("weights", "memo_doubling.pth", pth_zip(b"\x80\x02)q\x00" + b"h\x00h\x00\x86q\x00" * 64 + b"."))
# 100 000 nested tuples, and dicts nested through their keys.
out("weights", "deep_tuples.pth", pth_zip(b"\x80\x02)" + b"\x85" * 100000 + b"."))
out("weights", "deep_dict_keys.pth", pth_zip(b"\x80\x02)q\x00" + b"}h\x00Nsq\x00" * 20000 + b"."))
# offset + count wraps to 3 inside a 4-float storage (the panic at pth.rs:89).
out("weights", "offset_plus_count_wraps.pth",
    pth_zip(state_dict(4, 2**63 - 1, [2**61 + 1, 4], [4, 1]), b"\0" * 16))
# A shape whose product wraps to the storage's 4 elements.
out("weights", "shape_product_wraps.pth", pth_zip(state_dict(4, 0, [2**62 + 1, 4], [4, 1]), b"\0" * 16))

def idx(dims):
    return bytes([0, 0, 8, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims)
# 1.6 TB declared, 16 MiB of zeros delivered; and 10 bytes declared, 16 MiB delivered.
out("idx", "gzip_claims_terabytes.idx.gz", gzip.compress(idx([2**31, 28, 28]) + bytes(16 << 20), 9, mtime=0))
out("idx", "gzip_past_its_header.idx.gz", gzip.compress(idx([10]) + bytes(16 << 20), 9, mtime=0))

# Run folders (issue #32) whose files are folders, symbolic links (to themselves, to nothing, to
# another file of the folder) or another file than the one named, packed as `parsers::Folder` reads
# them, from the committed seeds. Links and folders are names the fuzzer rarely makes whole.
def unpack(data):
    entries, i = [], 0
    while i < len(data):
        n = data[i]
        (size,) = struct.unpack("<I", data[i + 1 + n:i + 5 + n])
        entries.append((data[i + 1:i + 1 + n].decode(), data[i + 5 + n:i + 5 + n + size]))
        i += 5 + n + size
    return entries

def pack(entries):
    return b"".join(bytes([len(n.encode())]) + n.encode() + struct.pack("<I", len(d)) + d for n, d in entries)

def seed(target, name):
    with open(os.path.join(root, "..", "seeds", target, name), "rb") as f:
        return unpack(f.read())

def edit(entries, drop=(), add=(), change=None):
    kept = [(n, change(n, d) if change else d) for n, d in entries if n not in drop]
    return pack(kept + list(add))

cnn = seed("run_folder", "tiny_cnn")  # model.json, pipeline.toml, cnn.safetensors
out("run_folder", "model_json_is_a_folder", edit(cnn, drop=["model.json"], add=[("model.json/", b"")]))
out("run_folder", "weights_link_to_itself",
    edit(cnn, drop=["cnn.safetensors"], add=[("cnn.safetensors@", b"cnn.safetensors")]))
out("run_folder", "weights_link_to_nothing",
    edit(cnn, drop=["cnn.safetensors"], add=[("cnn.safetensors@", b"gone.safetensors")]))
out("run_folder", "pipeline_link_to_model_json",
    edit(cnn, drop=["pipeline.toml"], add=[("pipeline.toml@", b"model.json")]))
out("run_folder", "weights_file_is_the_pipeline",
    edit(cnn, change=lambda n, d: d.replace(b'"cnn.safetensors"', b'"pipeline.toml"') if n == "model.json" else d))
part1 = seed("report_run", "part1")  # the folder's name, metrics.json, report.md, figure1_samples.png
out("report_run", "metrics_json_is_a_link",
    edit(part1, drop=["metrics.json"], add=[("metrics.json@", b"real.json"),
                                            ("real.json", dict(part1)["metrics.json"])]))
out("report_run", "metrics_json_is_a_folder", edit(part1, drop=["metrics.json"], add=[("metrics.json/", b"")]))
out("report_run", "report_md_is_a_folder", edit(part1, drop=["report.md"], add=[("report.md/", b"")]))
out("report_run", "figure_is_a_folder",
    edit(part1, drop=["figure1_samples.png"], add=[("figure1_samples.png/", b"")]))
out("report_run", "figure_link_to_metrics_json",
    edit(part1, drop=["figure1_samples.png"], add=[("figure1_samples.png@", b"metrics.json")]))
