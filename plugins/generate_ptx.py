"""Writes the precompiled RoI pooling kernels that srg-deploy ships (`plugins/ptx/`): one PTX file per variant in
`aot.SHIPPED` and `manifest.json` with each kernel's launch parameters and the Triton version that compiled them.

    python -m srg_deploy.plugins.generate_ptx            # regenerate in place (after changing the kernel or Triton)
    python -m srg_deploy.plugins.generate_ptx --out DIR  # write elsewhere (the test compares DIR with ptx/)

Needs Triton (`.[dev]` has the version the shipped files were made with), no GPU. Unset TRITON_INTERPRET: the
interpreter replaces the kernel that Triton compiles.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from srg_deploy.plugins.aot import PTX_ISA, SHIPPED, TARGET_ARCH, compile_kernel, manifest_entry

SHIPPED_DIR = Path(__file__).parent / "ptx"


def generate(out: Path) -> list[Path]:
    """Compile every shipped variant and write its PTX and the manifest into `out`; returns the files written."""
    import triton

    if os.environ.get("TRITON_INTERPRET") == "1":
        raise SystemExit("unset TRITON_INTERPRET: the shipped PTX is compiled from the real kernel")
    out.mkdir(parents=True, exist_ok=True)
    written, entries = [], []
    for variant in SHIPPED:
        kernel = compile_kernel(variant)
        path = out / variant.file_name
        path.write_text(kernel.ptx)
        written.append(path)
        entries.append(manifest_entry(variant, kernel))
    manifest = {
        "triton": triton.__version__,
        "target": f"sm_{TARGET_ARCH}",
        "ptx_isa": f"{PTX_ISA // 10}.{PTX_ISA % 10}",
        "kernels": entries,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return [*written, out / "manifest.json"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=SHIPPED_DIR, help=f"output folder (default {SHIPPED_DIR})")
    for path in generate(parser.parse_args().out):
        print(path)


if __name__ == "__main__":
    main()
