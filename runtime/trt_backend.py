"""TensorRT: a `.engine` file and its `.engine.json` sidecar, run with cuda-python on one CUDA stream.

Every output goes through an IOutputAllocator, so data-dependent shapes (sgdet's detections and pairs) and empty
outputs (N = 0, P = 0) need no special case. The sidecar is checked first: an engine only runs on the TensorRT
version and GPU it was built for, and its RoI kernel only on a driver that loads its PTX; saying so beats TensorRT's
own errors. Engines with the AOT plugin (TensorRT >= 10.9) carry their kernel and need neither PyTorch, Triton nor
the plugin module; only JIT engines import `srg_deploy.plugins.trt_plugin`.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from srg_deploy.config import SRGConfig
from srg_deploy.contract import TensorSpec, input_specs
from srg_deploy.errors import SRGError
from srg_deploy.runtime.backend import Backend
from srg_deploy.tensorrt_env import (
    check_cuda,
    driver_cuda_version,
    gpu_identity,
    import_cudart,
    import_tensorrt,
    max_ptx_isa,
    ptx_isa_from_text,
    ptx_isa_text,
    read_sidecar,
)


class _Allocator:
    """trt.IOutputAllocator: grows one device buffer per output and records the final shapes."""

    def __init__(self, trt, cudart) -> None:
        self.cudart = cudart
        self.buffers: dict[str, tuple[int, int]] = {}  # name -> (pointer, bytes)
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.lock = threading.Lock()
        outer = self

        class Allocator(trt.IOutputAllocator):
            def __init__(self) -> None:
                trt.IOutputAllocator.__init__(self)

            def reallocate_output(self, tensor_name, memory, size, alignment):
                return outer.reallocate(tensor_name, size)

            def reallocate_output_async(self, tensor_name, memory, size, alignment, stream):
                return outer.reallocate(tensor_name, size)

            def notify_shape(self, tensor_name, shape):
                outer.shapes[tensor_name] = tuple(shape)

        self.trt_allocator = Allocator()

    def reallocate(self, name: str, size: int) -> int:
        size = max(int(size), 1)
        with self.lock:
            pointer, capacity = self.buffers.get(name, (0, 0))
            if size > capacity:
                if pointer:
                    check_cuda(self.cudart, self.cudart.cudaFree(pointer))
                pointer = check_cuda(self.cudart, self.cudart.cudaMalloc(size))
                self.buffers[name] = (pointer, size)
            return pointer

    def free(self) -> None:
        for pointer, _ in self.buffers.values():
            self.cudart.cudaFree(pointer)
        self.buffers.clear()


class TrtBackend(Backend):
    name = "tensorrt"

    def __init__(self, path: Path) -> None:
        path = Path(path)
        if not path.is_file():
            raise SRGError(f"engine {path} does not exist")
        meta = read_sidecar(path)
        trt = import_tensorrt()
        cudart = import_cudart()
        if meta["tensorrt_version"] != trt.__version__:
            raise SRGError(
                f"{path} was built with TensorRT {meta['tensorrt_version']} but this is TensorRT {trt.__version__};"
                " rebuild it here with `srg-deploy build-engine`"
            )
        gpu = gpu_identity(cudart)
        if gpu["compute_capability"] != meta["gpu"]["compute_capability"]:
            raise SRGError(
                f"{path} was built for {meta['gpu']['name']} (compute capability {meta['gpu']['compute_capability']})"
                f" but this GPU is {gpu['name']} ({gpu['compute_capability']}); rebuild it here"
            )
        if meta["plugin"]["implementation"] == "aot":
            cuda = driver_cuda_version(cudart)
            limit = max_ptx_isa(cuda)
            if ptx_isa_from_text(meta["plugin"]["ptx_isa"]) > limit:
                raise SRGError(
                    f"{path}'s RoI pooling kernel is PTX ISA {meta['plugin']['ptx_isa']}, but this NVIDIA driver"
                    f" (CUDA {cuda[0]}.{cuda[1]}) loads PTX up to {ptx_isa_text(limit)}: update the driver, or"
                    " rebuild the engine on this machine"
                )
        else:
            try:  # a JIT engine calls back into the plugin's Python: it must be registered in this process
                import srg_deploy.plugins.trt_plugin  # noqa: F401
            except ImportError as e:
                raise SRGError(
                    f"{path} runs its RoI pooling plugin through Python (built with TensorRT < 10.9), which needs"
                    f" {e.name} here: install PyTorch and Triton, or rebuild the engine with TensorRT >= 10.9"
                ) from None

        self.trt, self.cudart = trt, cudart
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise SRGError(f"TensorRT cannot deserialize {path}: the file is corrupt or was not built by this TensorRT")
        self.context = self.engine.create_execution_context()
        self.stream = check_cuda(cudart, cudart.cudaStreamCreate())
        self.allocator = _Allocator(trt, cudart)
        self.inputs_memory: dict[str, tuple[int, int]] = {}
        names = [self.engine.get_tensor_name(k) for k in range(self.engine.num_io_tensors)]
        self.output_tensors = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        for name in self.output_tensors:
            self.context.set_output_allocator(name, self.allocator.trt_allocator)
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        declared = {
            n: TensorSpec(
                n,
                np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))),
                len(self.engine.get_tensor_shape(n)),
                input_specs(meta["mode"]).get(n, TensorSpec(n, np.dtype(object), 0, {})).dynamic,
            )
            for n in inputs
        }
        super().__init__(SRGConfig.from_dict(meta["config"]), meta["mode"], f"cuda:0 {gpu['name']}", declared)
        self._precision = meta["precision"]
        self.max_pairs = meta.get("max_pairs")
        self.path = path

    @property
    def precision(self) -> str:
        return self._precision

    def _input_pointer(self, name: str, nbytes: int) -> int:
        pointer, capacity = self.inputs_memory.get(name, (0, 0))
        if max(nbytes, 1) > capacity:
            if pointer:
                check_cuda(self.cudart, self.cudart.cudaFree(pointer))
            pointer = check_cuda(self.cudart, self.cudart.cudaMalloc(max(nbytes, 1)))
            self.inputs_memory[name] = (pointer, max(nbytes, 1))
        return pointer

    def _run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        cudart = self.cudart
        h2d, d2h = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        for name, array in inputs.items():
            pointer = self._input_pointer(name, array.nbytes)
            if array.nbytes:
                check_cuda(cudart, cudart.cudaMemcpyAsync(pointer, array.ctypes.data, array.nbytes, h2d, self.stream))
            self.context.set_input_shape(name, array.shape)
            self.context.set_tensor_address(name, pointer)
        if not self.context.execute_async_v3(int(self.stream)):
            raise RuntimeError("TensorRT execute_async_v3 failed")
        check_cuda(cudart, cudart.cudaStreamSynchronize(self.stream))
        outputs = {}
        for name in self.output_tensors:
            shape = self.allocator.shapes[name]
            dtype = np.dtype(self.trt.nptype(self.engine.get_tensor_dtype(name)))
            host = np.empty(shape, dtype)
            if host.nbytes:
                pointer = self.allocator.buffers[name][0]
                check_cuda(cudart, cudart.cudaMemcpyAsync(host.ctypes.data, pointer, host.nbytes, d2h, self.stream))
            outputs[name] = host
        check_cuda(cudart, cudart.cudaStreamSynchronize(self.stream))
        return outputs

    def _close(self) -> None:
        if getattr(self, "allocator", None) is not None:
            self.allocator.free()
            for pointer, _ in self.inputs_memory.values():
                self.cudart.cudaFree(pointer)
            self.inputs_memory.clear()
            self.cudart.cudaStreamDestroy(self.stream)
            self.allocator = None
