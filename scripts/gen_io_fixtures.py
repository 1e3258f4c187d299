#!/usr/bin/env python3
"""Writes the small file-format fixtures of crates/oxmx-core/tests/io.rs (rerunnable).

Every fixture is written by the reference tools (numpy, safetensors, mlx, gguf), and
expected.json records what loading each one must give: dtype, shape and the row-major
little-endian bytes of every array (hex, exact for NaN/inf/-0.0), plus metadata.
"""
import json
import os
import shutil

import numpy as np
import mlx.core as mx
import gguf
from safetensors.numpy import save_file as st_save_numpy

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "crates", "oxmx-core", "tests", "fixtures", "io")
EXPECTED = {"npy": {}, "npz": {}, "safetensors": {}, "gguf": {}}

NP_NAMES = {
    np.bool_: "bool", np.uint8: "uint8", np.uint16: "uint16", np.uint32: "uint32", np.uint64: "uint64",
    np.int8: "int8", np.int16: "int16", np.int32: "int32", np.int64: "int64",
    np.float16: "float16", np.float32: "float32", np.float64: "float64", np.complex64: "complex64",
}


def le_hex(a):
    a = np.asarray(a)
    return np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<")).tobytes().hex()


def entry_np(a, dtype_name=None):
    a = np.asarray(a)
    return {"dtype": dtype_name or NP_NAMES[a.dtype.type], "shape": list(a.shape), "hex": le_hex(a)}


def entry_mx(a):
    name = str(a.dtype).split(".")[-1].replace("bool_", "bool")
    if a.dtype == mx.bfloat16:
        raw = np.array(a.view(mx.uint16)).astype("<u2").tobytes()
    else:
        raw = np.array(a).astype(np.array(a).dtype.newbyteorder("<")).tobytes()
    return {"dtype": name, "shape": list(a.shape), "hex": raw.hex()}


def sample(dt, shape=(2, 3)):
    n = int(np.prod(shape))
    if dt == np.bool_:
        v = np.arange(n) % 3 == 0
    elif np.issubdtype(dt, np.integer):
        info = np.iinfo(dt)
        v = np.array([info.min, info.max, 0, 1, 7, info.max // 3] * n, dtype=dt)[:n]
    elif dt == np.complex64:
        v = (np.arange(n) - 1.5 + 1j * (np.arange(n) * 0.25 - 1)).astype(dt)
    else:
        v = np.array([-0.0, 1.5, -2.25, np.inf, np.nan, 65504.0] * n, dtype=dt)[:n]
    return np.asarray(v, dtype=dt).reshape(shape)


def npy_fixtures():
    for dt, name in NP_NAMES.items():
        a = sample(dt)
        np.save(f"{OUT}/{name}.npy", a)
        EXPECTED["npy"][f"{name}.npy"] = entry_np(a)
    cases = {
        "fortran_f32.npy": np.asfortranarray(np.arange(12, dtype=np.float32).reshape(3, 4)),
        "fortran_i16_3d.npy": np.asfortranarray(np.arange(24, dtype=np.int16).reshape(2, 3, 4)),
        "big_f64.npy": np.arange(6, dtype=">f8").reshape(2, 3) / 3,
        "big_i32.npy": np.array([[-2, 1 << 20, 3]], dtype=">i4"),
        "big_c64.npy": (np.arange(4) + 1j).astype(">c8"),
        "big_fortran_u16.npy": np.asfortranarray(np.arange(6, dtype=">u2").reshape(2, 3) * 1000),
        "scalar_f32.npy": np.array(3.25, dtype=np.float32),
        "scalar_bool.npy": np.array(True),
        "empty_f32.npy": np.zeros((0, 3), dtype=np.float32),
        "empty_i64_2.npy": np.zeros((2, 0), dtype=np.int64),
        "vec_u8.npy": np.arange(5, dtype=np.uint8),
    }
    for fname, a in cases.items():
        np.save(f"{OUT}/{fname}", a)
        # (np.ascontiguousarray would turn 0-d arrays into 1-d ones.)
        b = a.astype(a.dtype.newbyteorder("<"), order="C")
        EXPECTED["npy"][fname] = entry_np(b)
    # Format version 2.0 header (4-byte header length).
    a = np.arange(4, dtype=np.int32)
    with open(f"{OUT}/v2_i32.npy", "wb") as f:
        np.lib.format.write_array(f, a, version=(2, 0))
    EXPECTED["npy"]["v2_i32.npy"] = entry_np(a)
    # bfloat16 through MLX: written as '<V2' (NumPy has no bfloat16).
    b = mx.array([1.5, -2.0, 0.0078125], dtype=mx.bfloat16)
    mx.save(f"{OUT}/mlx_bf16.npy", b)
    EXPECTED["npy"]["mlx_bf16.npy"] = entry_mx(b)
    c = mx.arange(6, dtype=mx.float32).reshape(2, 3).T  # non-contiguous: MLX writes row-major
    mx.save(f"{OUT}/mlx_transposed.npy", c)
    EXPECTED["npy"]["mlx_transposed.npy"] = entry_mx(c)


def npz_fixtures():
    arrs = {"a": sample(np.float32), "b": sample(np.int64, (4,)), "s": np.array(2.5), "e": np.zeros((0,), np.uint8)}
    np.savez(f"{OUT}/plain.npz", **arrs)
    np.savez_compressed(f"{OUT}/compressed.npz", **arrs)
    for f in ("plain.npz", "compressed.npz"):
        EXPECTED["npz"][f] = {k: entry_np(v) for k, v in arrs.items()}
    m = {"x": mx.array([[1, 2], [3, 4]], dtype=mx.int16), "y": mx.array([0.5, 1.5])}
    mx.savez(f"{OUT}/mlx.npz", **m)
    EXPECTED["npz"]["mlx.npz"] = {k: entry_mx(v) for k, v in m.items()}


def st_fixtures():
    arrs = {name: sample(dt) for dt, name in NP_NAMES.items() if dt != np.complex64}
    arrs["scalar"] = np.array(1.25, dtype=np.float32)
    arrs["empty"] = np.zeros((0, 2), dtype=np.int32)
    meta = {"format": "np", "note": "héllo \"quoted\""}
    st_save_numpy(arrs, f"{OUT}/numpy.safetensors", metadata=meta)
    EXPECTED["safetensors"]["numpy.safetensors"] = {"metadata": meta, "tensors": {k: entry_np(v) for k, v in arrs.items()}}
    m = {
        "bf": mx.array([[1.0, -3.5], [0.25, 100.0]], dtype=mx.bfloat16),
        "c": mx.array([1 + 2j, -0.5j], dtype=mx.complex64),
        "b": mx.array([True, False, True]),
        "h": mx.array([1.0, 2.0, 3.0], dtype=mx.float16),
    }
    mmeta = {"format": "mlx", "k": "v"}
    mx.save_safetensors(f"{OUT}/mlx.safetensors", m, metadata=mmeta)
    EXPECTED["safetensors"]["mlx.safetensors"] = {"metadata": mmeta, "tensors": {k: entry_mx(v) for k, v in m.items()}}


def meta_json(field_types, value):
    """Expected metadata in the JSON form the Rust test rebuilds: {"type": T, "value": V}."""
    t = field_types[0]
    if t == gguf.GGUFValueType.ARRAY:
        return {"type": "ARRAY", "elem": field_types[1].name, "value": value}
    return {"type": t.name, "value": value}


def gguf_fixtures():
    path = f"{OUT}/pkg.gguf"
    w = gguf.GGUFWriter(path, "testarch")
    w.add_uint8("t.u8", 200)
    w.add_int8("t.i8", -100)
    w.add_uint16("t.u16", 60000)
    w.add_int16("t.i16", -30000)
    w.add_uint32("t.u32", 4000000000)
    w.add_int32("t.i32", -2000000000)
    w.add_float32("t.f32", 1.5)
    w.add_uint64("t.u64", 18000000000000000000)
    w.add_int64("t.i64", -9000000000000000000)
    w.add_float64("t.f64", 3.141592653589793)
    w.add_bool("t.bool", True)
    w.add_string("t.str", "héllo gguf")
    w.add_array("t.arr_i32", [1, -2, 3])
    w.add_array("t.arr_str", ["a", "", "ccc"])
    w.add_array("t.arr_f32", [0.5, -1.0])
    w.add_key_value("t.arr_u8", [1, 2, 255], gguf.GGUFValueType.ARRAY, sub_type=gguf.GGUFValueType.UINT8)
    w.add_key_value("t.arr_bool", [True, False], gguf.GGUFValueType.ARRAY, sub_type=gguf.GGUFValueType.BOOL)
    f32 = np.arange(12, dtype=np.float32).reshape(3, 4) - 5.5
    f16 = np.array([[1.0, -2.0], [0.5, 65504.0], [0.0, -0.0]], dtype=np.float16)
    i32 = np.array([7, -8, 9], dtype=np.int32)
    q = (np.arange(2 * 64, dtype=np.float32).reshape(2, 64) / 17.0 - 3.0)
    q8 = gguf.quants.quantize(q, gguf.GGMLQuantizationType.Q8_0)
    q4 = gguf.quants.quantize(q, gguf.GGMLQuantizationType.Q4_0)
    w.add_tensor("f32", f32)
    w.add_tensor("f16", f16)
    w.add_tensor("i32", i32)
    w.add_tensor("q8", q8, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    w.add_tensor("q4", q4, raw_dtype=gguf.GGMLQuantizationType.Q4_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    # Expected metadata read back by the reference reader (includes keys the writer adds).
    r = gguf.GGUFReader(path)
    meta = {}
    for name, field in r.fields.items():
        if name.startswith("GGUF."):
            continue
        meta[name] = meta_json(field.types, field.contents())
    tensors = {
        "f32": entry_np(f32),
        "f16": entry_np(f16),
        "i32": entry_np(i32),
        "q8": {"dtype": "uint8", "shape": list(q8.shape), "hex": q8.tobytes().hex(), "ggml_type": 8},
        "q4": {"dtype": "uint8", "shape": list(q4.shape), "hex": q4.tobytes().hex(), "ggml_type": 2},
    }
    EXPECTED["gguf"]["pkg.gguf"] = {"metadata": meta, "tensors": tensors}

    m = {"w": mx.arange(6, dtype=mx.float32).reshape(2, 3), "h": mx.array([1, 2], dtype=mx.float16), "i": mx.array([[3]], dtype=mx.int32)}
    mmeta = {"s": "hi", "l": ["a", "b"], "arr": mx.array([1, 2], dtype=mx.int32)}
    mx.save_gguf(f"{OUT}/mlx.gguf", m, mmeta)
    r = gguf.GGUFReader(f"{OUT}/mlx.gguf")
    meta = {n: meta_json(f.types, f.contents()) for n, f in r.fields.items() if not n.startswith("GGUF.")}
    EXPECTED["gguf"]["mlx.gguf"] = {"metadata": meta, "tensors": {k: entry_mx(v) for k, v in m.items()}}


def main():
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    npy_fixtures()
    npz_fixtures()
    st_fixtures()
    gguf_fixtures()
    with open(f"{OUT}/expected.json", "w") as f:
        json.dump(EXPECTED, f, indent=1, sort_keys=True)
    total = sum(os.path.getsize(os.path.join(OUT, p)) for p in os.listdir(OUT))
    print(f"wrote {len(os.listdir(OUT))} files, {total} bytes, to {os.path.normpath(OUT)}")


if __name__ == "__main__":
    main()
