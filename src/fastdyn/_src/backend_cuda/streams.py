"""torch's current CUDA stream as the integer handle fastdyn's CUDA bindings launch on."""
import torch


def current_stream(device: torch.device) -> int:
    """torch's current CUDA stream on ``device``, as the integer handle the kernels launch on."""
    return torch.cuda.current_stream(device).cuda_stream
