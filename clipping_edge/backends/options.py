"""What a caller may ask of any backend; its own module, so that the backends need not import their package."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class BackendOptions:
    threads: int | None = None  # None: the backend's default (all cores)
    providers: list[str] = field(default_factory=list)  # ONNX Runtime execution providers
    precision_hint: str | None = None  # OpenVINO INFERENCE_PRECISION_HINT (default f32)
    # Where the towers run, in each backend's terms (None: the CPU). onnx: cpu, cuda, or execution
    # providers by name, comma-separated, in order of preference (e.g. TensorrtExecutionProvider,CUDAExecutionProvider).
    # openvino: an OpenVINO device (CPU, GPU, NPU, AUTO, ...). tflite: cpu, or delegate:PATH of a LiteRT
    # delegate library (e.g. the GPU delegate). coreml: Core ML compute units (all, cpu_only, cpu_and_gpu, cpu_and_ne).
    device: str | None = None
    # OpenVINO: keep each tower compiled for this CPU here, so later processes load it instead of compiling
    # it again (the 224-px CNN's int8 load: 0.68 -> 0.37 s here). The blob is keyed by the model and the
    # settings: a re-exported bundle compiles anew. None: compile at every load.
    compile_cache: Path | None = None
