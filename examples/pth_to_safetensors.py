#!/usr/bin/python3
"""Convert a PyTorch .pth / .pt state_dict to a .safetensors file that xfer loads.

    /usr/bin/python3 examples/pth_to_safetensors.py resnet18-f37072fd.pth resnet18.safetensors
    /usr/bin/python3 examples/pth_to_safetensors.py ckpt.pth out.safetensors --strip-prefix module. --dtype bf16

Needs only torch (no `safetensors` package): the format is an 8-byte little-endian header length,
a JSON header, then the raw little-endian tensor bytes. write_safetensors / read_safetensors below
are also imported by tests/fixtures/gen_parity.py.

Accepted inputs: a state_dict, or a checkpoint dict holding one under 'state_dict', 'model' or
'model_state_dict'. Non-tensor entries are skipped (and listed). timm's and torchvision's ResNet /
VGG keys are already xfer's names, so no renaming is needed for them.
"""
import argparse
import json
import os
import struct
import sys


def _numpy_dtypes():
    import numpy as np  # imported lazily: tests import this file to learn that torch is missing
    return {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
            "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_, "BF16": np.int16}


def _torch_dtypes():
    import torch
    return {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
            torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
            torch.bool: "BOOL"}


def _tensor_bytes(t):
    import torch
    t = t.detach().cpu().contiguous()
    if t.dtype == torch.bfloat16:  # numpy has no bfloat16: same bits as int16
        t = t.view(torch.int16)
    return t.numpy().tobytes()


def write_safetensors(path, tensors, metadata=None):
    """tensors: ordered dict name -> torch.Tensor. Written to a temp file, then renamed."""
    dtypes = _torch_dtypes()
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        if t.dtype not in dtypes:
            raise ValueError(f"{path}: tensor '{name}' has unsupported dtype {t.dtype}")
        b = _tensor_bytes(t)
        header[name] = {"dtype": dtypes[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(struct.pack("<Q", len(text)))
            f.write(text)
            for b in blobs:
                f.write(b)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def read_safetensors(path):
    """Returns (dict name -> torch.Tensor in file order, metadata dict)."""
    import numpy as np
    import torch
    np_dtypes = _numpy_dtypes()
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    metadata = header.pop("__metadata__", {})
    out = {}
    for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        b, e = info["data_offsets"]
        dt = info["dtype"]
        arr = np.frombuffer(data, dtype=np_dtypes[dt], count=(e - b) // np.dtype(np_dtypes[dt]).itemsize, offset=b).copy()
        t = torch.from_numpy(arr)
        if dt == "BF16":
            t = t.view(torch.bfloat16)
        out[name] = t.reshape(info["shape"])
    return out, metadata


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("input", help=".pth/.pt file holding a state_dict")
    ap.add_argument("output", help=".safetensors file to write")
    ap.add_argument("--strip-prefix", default="", help="remove this prefix from keys (e.g. 'module.')")
    ap.add_argument("--dtype", default="keep", choices=["keep", "f32", "f16", "bf16"],
                    help="store floating tensors in this dtype (integers such as num_batches_tracked stay I64)")
    args = ap.parse_args()

    import torch
    obj = torch.load(args.input, map_location="cpu")
    if isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict):
        if hasattr(obj, "state_dict"):
            obj = obj.state_dict()
        else:
            sys.exit(f"{args.input}: expected a state_dict (dict of tensors), got {type(obj).__name__}")
    cast = {"keep": None, "f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}[args.dtype]
    tensors, skipped = {}, []
    for k, v in obj.items():
        if not torch.is_tensor(v):
            skipped.append(k)
            continue
        if args.strip_prefix and k.startswith(args.strip_prefix):
            k = k[len(args.strip_prefix):]
        if k in tensors:
            sys.exit(f"{args.input}: key '{k}' appears twice after stripping '{args.strip_prefix}'")
        if cast is not None and v.is_floating_point():
            v = v.to(cast)
        tensors[k] = v.clone()  # clone: shared storages / views become independent contiguous tensors
    write_safetensors(args.output, tensors, {"format": "pt", "source": os.path.basename(args.input)})
    print(f"wrote {len(tensors)} tensors to {args.output}" + (f" (skipped non-tensors: {', '.join(skipped)})" if skipped else ""))


if __name__ == "__main__":
    main()
